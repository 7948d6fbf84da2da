"""Entry script for browser tests on the fake backend: the app's router, with every model run by
a `FakeBackend` declared in $ILE_FAKE_BACKEND (JSON: its latencies, `load_s`, and
`other_cpu_percent`, other programs' CPU share) whose latencies pass in real time, and this
machine's ceilings declared, so a browser test sees a sweep of known length on a machine as busy
as it says, without loading a model.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import fakes  # noqa: E402
from lib import ui  # noqa: E402

fakes.serve_fake_backend_from_environment()
ui.run_app()
