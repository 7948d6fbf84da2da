"""One measurement at a time: a second caller waits, is told why, and never overlaps."""

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from lib.core import paths
from lib.machine import runlock

HOLDER = textwrap.dedent("""
    import sys, time
    from lib.machine.runlock import measurement_slot
    with measurement_slot("holder run"):
        print("holding", flush=True)
        time.sleep(float(sys.argv[1]))
        print(time.time(), flush=True)   # release time, printed just before leaving the slot
""")


@pytest.mark.slow
def test_second_caller_waits_and_is_told_with_a_notice_that_counts_up(model_cache_dir,
                                                                     monkeypatch):
    monkeypatch.setattr(runlock, "WAIT_UPDATE_S", 0.2)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "1.5"], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "holding"
    assert runlock.current_holder()["description"] == "holder run"
    messages = []
    with runlock.measurement_slot("second run", on_wait=messages.append):
        entered = time.time()
        assert runlock.current_holder()["description"] == "second run"
    released = float(holder.stdout.readline())
    holder.wait(timeout=10)
    assert len(messages) >= 3                  # told again every 0.2 s of a ~1.5 s wait
    assert "holder run" in messages[0] and "queued for 0 s" in messages[0]
    assert "queued for 1 s" in messages[-1]
    assert entered >= released


def test_free_slot_does_not_wait(model_cache_dir):
    messages = []
    with runlock.measurement_slot("alone", on_wait=messages.append):
        pass
    assert messages == []
    assert runlock.current_holder() is None


def test_crashed_holder_releases_the_slot(model_cache_dir):
    crash = "from lib.machine.runlock import measurement_slot\nimport os\n" \
            "with measurement_slot('doomed'):\n    os._exit(3)\n"
    assert subprocess.run([sys.executable, "-c", crash]).returncode == 3
    assert runlock.current_holder()["description"] == "doomed"     # its note stayed behind
    messages = []
    with runlock.measurement_slot("after crash", on_wait=messages.append):
        assert runlock.current_holder()["description"] == "after crash"
    # The OS dropped the dead process's lock, so nobody waited behind a stale note.
    assert messages == []
    assert runlock.current_holder() is None


# --- a queue that says where you are and how long it may take (issue 10) -----------------------

def _wait_until(condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextlib.contextmanager
def _held(description="holder run", estimate_s=None):
    """The slot held by a thread of this process until the block ends; yields the slot."""
    entered, leave, slots = threading.Event(), threading.Event(), []

    def hold():
        with runlock.measurement_slot(description, estimate_s=estimate_s) as slot:
            slots.append(slot)
            entered.set()
            leave.wait(30)
    thread = threading.Thread(target=hold)
    thread.start()
    assert entered.wait(10)
    try:
        yield slots[0]
    finally:
        leave.set()
        thread.join(10)


class _Waiter:
    """Waits for the slot on its own thread, noting every notice and when it got in."""

    def __init__(self, name, order):
        self.name, self.messages = name, []

        def run():
            with runlock.measurement_slot(name, on_wait=self.messages.append):
                order.append(name)
                time.sleep(0.05)
        self.thread = threading.Thread(target=run)
        self.thread.start()


@pytest.mark.slow
def test_waiters_are_told_their_place_and_served_first_come_first_served(monkeypatch):
    monkeypatch.setattr(runlock, "WAIT_UPDATE_S", 0.1)
    order = []
    with _held():
        waiters = []
        for name in ("first", "second", "third"):
            waiters.append(_Waiter(name, order))
            _wait_until(lambda: waiters[-1].messages)
        seen = [len(w.messages) for w in waiters]
        _wait_until(lambda: all(len(w.messages) > n for w, n in zip(waiters, seen)))
        assert "You are 1st in line" in waiters[0].messages[-1]
        assert "You are 2nd in line" in waiters[1].messages[-1]
        assert "You are 3rd in line" in waiters[2].messages[-1]
        assert "2 runs wait before yours" in waiters[2].messages[-1]
    for waiter in waiters:
        waiter.thread.join(10)
    assert order == ["first", "second", "third"]


def test_a_waiter_that_died_keeps_nobody_waiting(monkeypatch):
    monkeypatch.setattr(runlock, "WAIT_UPDATE_S", 0.1)
    doomed = ("from lib.machine.runlock import measurement_slot\n"
              "with measurement_slot('doomed waiter', on_wait=lambda m: print('waiting', "
              "flush=True)):\n    pass\n")
    order = []
    with _held():
        dead = subprocess.Popen([sys.executable, "-c", doomed], stdout=subprocess.PIPE, text=True)
        assert dead.stdout.readline().strip() == "waiting"
        dead.kill()
        dead.wait(10)
        alive = _Waiter("alive", order)
        _wait_until(lambda: alive.messages)
        assert "You are 1st in line" in alive.messages[-1]
    alive.thread.join(10)
    assert order == ["alive"]
    assert not list((paths.runtime_dir() / runlock.QUEUE_FOLDER).glob("*.ticket"))


@pytest.mark.slow
def test_the_notice_counts_up_and_gives_an_estimate_the_holder_revises(monkeypatch):
    monkeypatch.setattr(runlock, "WAIT_UPDATE_S", 0.1)
    with _held(estimate_s=90) as slot:
        waiter = _Waiter("mine", [])
        _wait_until(lambda: waiter.messages)
        first = waiter.messages[-1]
        time.sleep(1.2)
        slot.update(30)
        count = len(waiter.messages)
        _wait_until(lambda: len(waiter.messages) > count)
        last = waiter.messages[-1]
    waiter.thread.join(10)
    running = [int(re.search(r"running for (\d+) s", m).group(1)) for m in (first, last)]
    assert running[1] > running[0]
    assert re.search(r"about 1 min (29|30) s left \(an estimate from its settings\)", first)
    assert re.search(r"about (29|30) s left \(an estimate from its repetitions so far\)", last)
    assert re.search(r"Yours should start in about (29|30) s \(an estimate\)", last)


@pytest.mark.slow
def test_cleaning_the_cache_folder_during_a_run_frees_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "WAIT_UPDATE_S", 0.1)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ILE_CACHE_DIR", str(cache))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "1.0"], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "holding"
    shutil.rmtree(cache, ignore_errors=True)
    messages = []
    with runlock.measurement_slot("second run", on_wait=messages.append):
        entered = time.time()
    released = float(holder.stdout.readline())
    holder.wait(timeout=10)
    assert messages and entered >= released


@pytest.mark.slow
def test_a_holder_puts_back_a_lock_file_removed_under_it(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "WAIT_UPDATE_S", 0.1)
    monkeypatch.setenv("ILE_RUNTIME_DIR", str(tmp_path / "run"))
    keeper = "import lib.machine.runlock\nlib.machine.runlock.KEEP_CHECK_S = 0.05\n" + HOLDER
    holder = subprocess.Popen([sys.executable, "-c", keeper, "1.0"], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "holding"
    shutil.rmtree(tmp_path / "run")
    time.sleep(0.3)                        # the holder looks every 0.05 s
    messages = []
    with runlock.measurement_slot("second run", on_wait=messages.append):
        entered = time.time()
    released = float(holder.stdout.readline())
    holder.wait(timeout=10)
    assert messages and "holder run" in messages[-1]       # its note was put back too
    assert entered >= released


def test_a_lock_file_replaced_before_it_is_locked_is_locked_afresh(monkeypatch):
    lock_path = paths.runtime_dir() / runlock.LOCK_NAME
    real_flock, replaced = fcntl.flock, []

    def replace_first(fd, operation):
        if not replaced and operation & fcntl.LOCK_EX and os.fstat(fd).st_ino == \
                os.stat(lock_path).st_ino:
            replaced.append(True)          # another process swapped the file after our open
            lock_path.unlink()
            lock_path.touch()
        return real_flock(fd, operation)
    monkeypatch.setattr(runlock.fcntl, "flock", replace_first)
    probe = ("import fcntl, sys\nf = open(sys.argv[1], 'a')\n"
             "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n    print('free')\n"
             "except BlockingIOError:\n    print('held')\n")
    with runlock.measurement_slot("mine"):
        result = subprocess.run([sys.executable, "-c", probe, str(lock_path)],
                                capture_output=True, text=True, timeout=30)
    assert replaced and result.stdout.strip() == "held"


def test_the_slot_is_not_in_the_cache_folder(model_cache_dir):
    with runlock.measurement_slot("alone"):
        assert runlock.current_holder()["description"] == "alone"
        runtime = paths.runtime_dir()
        assert (runtime / runlock.LOCK_NAME).exists()
        assert runtime != model_cache_dir and model_cache_dir not in runtime.parents
