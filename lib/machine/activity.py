"""What the rest of the machine did while something was timed: other processes' CPU share.

The measurement queue (`lib.machine.runlock`) keeps our own runs apart, but not a browser, a compile or
another person's program, which take cores from the model and slow it down. `watch()` reads the
machine-wide CPU time (/proc/stat through psutil) and this process's own CPU time around a block:

    other_cpu_percent = (machine busy time - this process's CPU time) / (wall time x cores) x 100

so 50% on a 2-core machine is one core kept busy by something else. It also keeps the 1-minute
load average at the end. The kernel counts CPU time in ticks (10 ms), so a very short block reads
coarsely: the per-point median over repetitions is what `lib.core.stats.point_noise` judges.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

import psutil

_NOT_BUSY = ("idle", "iowait", "guest", "guest_nice")   # guest time is already in user time


@dataclass
class Load:
    other_cpu_percent: float | None = None
    load_average: float | None = None
    # Other programs' threads ready to run (`busy_now` only): a share can't pass 100%, but ten
    # programs wanting two cores slow a run down far more than two do.
    other_threads: float | None = None


def _machine_busy_s() -> float:
    times = psutil.cpu_times()
    return sum(value for name, value in times._asdict().items() if name not in _NOT_BUSY)


def _own_cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


@contextlib.contextmanager
def watch():
    """Yields a `Load`, filled when the block ends (left empty where the OS can't tell)."""
    load = Load()
    try:
        process = psutil.Process()
        busy, own, wall = _machine_busy_s(), _own_cpu_s(process), time.monotonic()
    except (psutil.Error, OSError, AttributeError):
        yield load
        return
    yield load
    elapsed = time.monotonic() - wall
    cores = psutil.cpu_count() or 1
    if elapsed > 0:
        other = (_machine_busy_s() - busy) - (_own_cpu_s(process) - own)
        load.other_cpu_percent = min(max(other / (elapsed * cores) * 100, 0.0), 100.0)
    with contextlib.suppress(OSError, AttributeError):
        load.load_average = os.getloadavg()[0]


SAMPLES = 5


def busy_now(seconds: float = 0.5) -> Load:
    """How busy the machine is right now, before anything of ours runs (this process idle
    meanwhile): other programs' CPU share over `seconds`, and the median number of their
    threads ready to run (/proc/loadavg, less the one reading it). Unknowns stay None."""
    counts = []
    with watch() as load:
        for _ in range(SAMPLES):
            time.sleep(seconds / SAMPLES)
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open("/proc/loadavg") as f:
                    counts.append(int(f.read().split()[3].split("/")[0]) - 1)
    if counts:
        load.other_threads = float(sorted(counts)[len(counts) // 2])
    return load


def sample(seconds: float) -> Load:
    """Other programs' share of the CPU over the next `seconds`, this process sleeping."""
    return busy_now(seconds)
