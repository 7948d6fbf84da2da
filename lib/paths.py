"""Where the app keeps files between runs.

One folder, `$ILE_CACHE_DIR` or `~/.cache/inference-latency-explorer`: converted models and the
machine-wide measurement lock. Set the variable to move it (a faster disk, a shared cache in CI).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ILE_CACHE_DIR"


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "inference-latency-explorer"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
