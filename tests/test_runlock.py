"""One measurement at a time: a second caller waits, is told why, and never overlaps."""

import subprocess
import sys
import textwrap
import time

from lib import runlock

HOLDER = textwrap.dedent("""
    import sys, time
    from lib.runlock import measurement_slot
    with measurement_slot("holder run"):
        print("holding", flush=True)
        time.sleep(float(sys.argv[1]))
        print(time.time(), flush=True)   # release time, printed just before leaving the slot
""")


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
    crash = "from lib.runlock import measurement_slot\nimport os\n" \
            "with measurement_slot('doomed'):\n    os._exit(3)\n"
    assert subprocess.run([sys.executable, "-c", crash]).returncode == 3
    assert runlock.current_holder()["description"] == "doomed"     # its note stayed behind
    messages = []
    with runlock.measurement_slot("after crash", on_wait=messages.append):
        assert runlock.current_holder()["description"] == "after crash"
    # The OS dropped the dead process's lock, so nobody waited behind a stale note.
    assert messages == []
    assert runlock.current_holder() is None
