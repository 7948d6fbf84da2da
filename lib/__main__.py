"""`python -m lib ...`: the headless command line (see lib/cli.py)."""

import sys

from lib.cli import entry

sys.exit(entry())
