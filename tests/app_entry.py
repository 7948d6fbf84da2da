"""Entry script for AppTest: the same router as app.py, from a folder without a `pages/` beside it.

Streamlit's AppTest (1.67) mistakes a `pages/` folder next to the main script for old-style
multipage discovery and skips the router on reruns; the real server does not. Running the router
from here keeps the tests on the real code path.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib import ui  # noqa: E402

ui.run_app()
