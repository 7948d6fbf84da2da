"""Where the app keeps files between runs, and where its measurement queue lives.

`cache_dir()`: `$ILE_CACHE_DIR` or `~/.cache/inference-latency-explorer`, converted models only.
Set the variable to move it (a faster disk, a shared cache in CI); deleting it costs a
conversion, nothing more.

`data_dir()`: `$ILE_DATA_DIR` or `~/.local/share/inference-latency-explorer`, what the app keeps
for good: the run history (`lib.records.store`) and what sweeps learned of this machine's speed
(`lib.measure.budget`). Not created here: reading an absent history is not an error.

`runtime_dir()`: the measurement queue (`lib.machine.runlock`), kept out of the cache because people
clean caches, and a lock deleted mid-run would let a second run start alongside. It is
`$ILE_RUNTIME_DIR` when set; else `$XDG_RUNTIME_DIR/inference-latency-explorer` (the login
session's own folder, emptied only at logout); else `<temp>/inference-latency-explorer-<uid>`.
Every process of one user that sees the same variables shares it, so the queue is per user:
run the server and the CLI with the same environment (or the same `ILE_RUNTIME_DIR`) to
queue them together. The tests give each test session its own folder, so parallel test runs
never wait for each other or for the app. The folder is private (mode 0700) and must be ours:
in a shared temporary folder, one planted by someone else is refused, never used.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from lib.core.errors import QueueError

CACHE_ENV = "ILE_CACHE_DIR"
DATA_ENV = "ILE_DATA_DIR"
RUNTIME_ENV = "ILE_RUNTIME_DIR"
APP_FOLDER = "inference-latency-explorer"


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / APP_FOLDER
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV) or Path.home() / ".local" / "share" / APP_FOLDER)


def runtime_dir() -> Path:
    """The private folder of the measurement queue, created if missing (see the module)."""
    override = os.environ.get(RUNTIME_ENV)
    if override:
        return _private_folder(Path(override))
    session = os.environ.get("XDG_RUNTIME_DIR")
    if session and os.path.isdir(session) and os.access(session, os.W_OK | os.X_OK):
        return _private_folder(Path(session) / APP_FOLDER)
    return _private_folder(Path(tempfile.gettempdir()) / f"{APP_FOLDER}-{os.getuid()}")


def _private_folder(path: Path) -> Path:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise QueueError(f"The measurement queue's folder {path} can't be made ({exc}). Set "
                         f"{RUNTIME_ENV} to a folder of your own.") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise QueueError(f"{path} is not a private folder (a link or a file is in its place), "
                         f"so the measurement queue can't live there. Remove it, or set "
                         f"{RUNTIME_ENV} to a folder of your own.")
    if info.st_uid != os.geteuid():
        raise QueueError(f"{path} belongs to another user, so the measurement queue can't "
                         f"safely live there. Set {RUNTIME_ENV} to a folder of your own.")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)              # ours, but others could have planted tickets in it
    return path
