"""``python -m dlbasics.studies``: the ``dlbasics`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
