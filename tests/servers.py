"""Child processes that die with the test run: for Streamlit servers started by tests.

A server started by a test must not outlive the run, even when pytest is killed (a timeout, a
SIGKILL): `die_with_parent` (a `preexec_fn`) puts the child in its own process group, so the
fixture can stop it and everything it started with one `killpg`, and asks Linux to send it
SIGTERM as soon as its parent dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

PR_SET_PDEATHSIG = 1
ROOT = Path(__file__).resolve().parent.parent


def die_with_parent() -> None:
    os.setpgrp()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop(process: subprocess.Popen, timeout_s: float = 20) -> None:
    """SIGTERM to the child's whole group, then SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_app(log_path: Path, env: dict[str, str], args: list[str] = (),
                  port: int | None = None, script: str = "app.py") -> Iterator[int]:
    """`streamlit run app.py` from the repository root, as a user starts it, plus `args`
    (`script`: another entry, such as tests/fake_backend_app.py); yields its port once
    /_stcore/health answers (checked on 127.0.0.1)."""
    port = port or free_port()
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
             "--server.headless", "true", *args],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                            timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Streamlit did not start:\n" + log_path.read_text()) \
                        from None
                time.sleep(0.5)
        yield port
    finally:
        stop(process)
