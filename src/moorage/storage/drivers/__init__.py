"""Storage drivers. Each module defines one driver class with a ``Settings`` model and ``from_config``."""
