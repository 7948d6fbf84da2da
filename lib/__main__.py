"""`python -m lib ...`: the headless command line (see lib/cli/main.py)."""

import sys

from lib.cli.main import entry

sys.exit(entry())
