"""``python -m moorage.cli``."""

from moorage.cli import main

main()
