"""``python -m dlbasics.studies.speed``: the speed study (as ``dlbasics bench``)."""

import sys

from .bench import main

if __name__ == "__main__":
    sys.exit(main())
