"""A server started by the tests dies with the test run, even when the run is killed."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent

PARENT = textwrap.dedent("""
    import subprocess, sys, time
    sys.path.insert(0, sys.argv[1])
    import servers
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                             preexec_fn=servers.die_with_parent)
    print(child.pid, flush=True)
    time.sleep(120)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:           # a zombie is dead, only not yet reaped
        return f.read().split(") ")[1][0] != "Z"


def test_child_dies_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(TESTS)], stdout=subprocess.PIPE,
                              text=True)
    child_pid = int(parent.stdout.readline())
    assert _alive(child_pid)
    assert os.getpgid(child_pid) == child_pid               # its own process group
    parent.kill()                                           # SIGKILL: no cleanup code runs
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid)
