"""benchmarks/busy.py: the CPU-bound processes a benchmark starts run for the block and are
always stopped, by its end or by an exception."""

import psutil
import pytest

from benchmarks import busy


def test_processes_run_for_the_block_and_are_stopped_after():
    with busy.processes(2) as children:
        assert len(children) == 2 and all(child.poll() is None for child in children)
        pids = [child.pid for child in children]
    assert all(child.poll() is not None for child in children)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                   for pid in pids)


def test_an_exception_in_the_block_still_stops_them():
    with pytest.raises(KeyboardInterrupt):
        with busy.processes(1) as children:
            raise KeyboardInterrupt
    assert children[0].poll() is not None


def test_none_is_a_quiet_machine_and_a_negative_count_is_refused():
    with busy.processes(0) as children:
        assert children == []
    with pytest.raises(ValueError, match="0 or more"):
        with busy.processes(-1):
            pass


def test_the_accuracy_benchmark_compares_quiet_and_busy_point_by_point():
    from benchmarks import estimator_accuracy as bench

    def point(measured_s, estimated_s, model="gpt2"):
        return {"model": model, "dtype": "float32", "batch": 1, "prompt": 64,
                "tpot_s": {"measured": measured_s, "estimated": estimated_s}}

    def condition(error, rows):
        return {"summary": {"tpot_s": {"median_abs_error": error}}, "points": rows}
    quiet = condition(0.10, [point(0.05, 0.055), point(0.02, 0.02, "smollm2-135m-instruct")])
    busy = condition(0.45, [point(0.10, 0.055), point(0.05, 0.02, "smollm2-135m-instruct"),
                            {"model": "x", "dtype": "float32", "batch": 1, "prompt": 64,
                             "skipped": "too big"}])
    found = bench.compare_conditions(quiet, busy)
    assert found["difference_points"] == pytest.approx(0.35) and found["met"] is False
    assert found["tpot_estimate_change_median"] == 0.0
    assert found["tpot_measured_slowdown_median"] == pytest.approx(2.25)     # x2 and x2.5
    lines = bench.describe_comparison(found, "quiet", "busy (2 CPU-bound processes)")
    assert "quiet 10.0%, busy (2 CPU-bound processes) 45.0%" in lines[1]
    assert lines[2].startswith("difference +35.0 points (goal: within 10) NOT MET")


def test_they_stop_by_themselves_when_the_process_that_started_them_is_killed():
    import signal
    import subprocess
    import sys
    import time

    code = ("import sys; sys.path.insert(0, '.'); from benchmarks import busy\n"
            "with busy.processes(1) as children:\n"
            "    print(children[0].pid, flush=True); import time; time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert psutil.pid_exists(child)
    parent.send_signal(signal.SIGKILL)                   # no finally, no atexit
    parent.wait()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(child) and psutil.Process(child).status() != "zombie" \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"
