"""Entry script for CLI tests that need a real process (a kill -9, say) but not a model:
`python tests/fake_backend_cli.py ARGS` is `python -m lib ARGS` with every model run by the
`FakeBackend` declared in $ILE_FAKE_BACKEND, whose latencies pass in real time, on a machine
with declared ceilings (tests/fake_backend_app.py is the same for the app)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import fakes  # noqa: E402
from lib.cli.main import entry  # noqa: E402

fakes.serve_fake_backend_from_environment()
sys.exit(entry())
