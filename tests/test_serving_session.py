"""A whole load run on the real local server (slow): the child server never outlives the run,
whether the run finishes, is stopped, or the process running it is killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from lib.core.errors import StoppedError
from lib.serving import local, session
from lib.serving.plan import LoadPlan

ROOT = Path(__file__).resolve().parent.parent
GONE_WITHIN_S = 15.0
TARGET = session.Target(session.LOCAL, model_id="smollm2-135m-instruct")


def _servers_of(process: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in process.children(recursive=True):
        try:
            if "lib.serving.child" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _gone(pids: list[int]) -> bool:
    deadline = time.monotonic() + GONE_WITHIN_S
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_the_server_is_gone_after_a_finished_run_and_after_stop():
    me = psutil.Process()
    seen: list[int] = []

    def watch(words, fraction):
        seen.extend(p.pid for p in _servers_of(me) if p.pid not in seen)
    plan = LoadPlan(mode="concurrency", levels=(1,), requests=2, warmup=0, prompt_tokens=16,
                    new_tokens=4)
    outcome = session.measure(TARGET, plan, None, on_progress=watch)
    assert outcome.load.summaries[0]["completed"] == 2
    assert seen and _gone(seen), "the server outlived a finished run"
    assert not local._RUNNING

    stop, seen_stop = threading.Event(), []

    def press_stop(words, fraction):
        seen_stop.extend(p.pid for p in _servers_of(me) if p.pid not in seen_stop)
        stop.set()
    plan = LoadPlan(mode="concurrency", levels=(1, 2), requests=50, warmup=0,
                    prompt_tokens=16, new_tokens=8)
    started = time.monotonic()
    try:
        outcome = session.measure(TARGET, plan, None, on_progress=press_stop, stop=stop)
        assert outcome.load.stopped
    except StoppedError:
        pass
    assert time.monotonic() - started < 60, "Stop did not end the run promptly"
    assert seen_stop and _gone(seen_stop), "the server outlived a stopped run"
    assert _servers_of(me) == []


@pytest.mark.slow
def test_the_server_dies_when_the_load_command_is_killed(tmp_path):
    command = subprocess.Popen(
        [sys.executable, "-m", "lib", "load", "--target", "local", "--model",
         "smollm2-135m-instruct", "--concurrency", "2", "--requests", "500",
         "--new-tokens", "16", "--prompt-tokens", "16"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        parent = psutil.Process(command.pid)
        deadline = time.monotonic() + 180
        servers: list[psutil.Process] = []
        while time.monotonic() < deadline and not servers:
            assert command.poll() is None, command.stderr.read()
            servers = _servers_of(parent)
            time.sleep(0.5)
        assert servers, "no server started"
        # Wait until requests flow (the first progress line), then kill it without warning.
        line = command.stderr.readline()
        while line and "measured requests done" not in line:
            line = command.stderr.readline()
        pids = [p.pid for p in servers]
        command.send_signal(signal.SIGKILL)
        command.wait(timeout=15)
        assert _gone(pids), "the server outlived the killed load command"
    finally:
        command.kill()
        command.wait()
