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
import subprocess

PR_SET_PDEATHSIG = 1


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
