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
