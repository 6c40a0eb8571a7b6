"""Real object stores for the storage tests: starters (``*.sh``) and session fixtures."""
