"""The one timing seam: a clock that knows how to wait for each device.

GPUs run asynchronously: a kernel launch returns before the work is done, so reading the wall clock
right after it measures the launch, not the work. `DeviceClock.now()` first waits for the device
(CUDA or MPS) to finish everything queued, then reads `time.perf_counter()`. Everything that times
goes through a clock object, so tests can hand the engine a `ManualClock` whose time only moves when
a fake model says so, and assert exact latencies.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic clock, after the device has finished queued work."""
        ...


class DeviceClock:
    def __init__(self, device: str) -> None:
        self.device = device
        self._sync = _synchronizer(device)

    def now(self) -> float:
        self._sync()
        return time.perf_counter()


class ManualClock:
    """A clock for tests and fakes: time moves only through `advance`."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.time_s = start_s

    def now(self) -> float:
        return self.time_s

    def advance(self, seconds: float) -> None:
        self.time_s += seconds


def _synchronizer(device: str):
    if device == "cpu":
        return lambda: None
    import torch

    if device == "cuda":
        return torch.cuda.synchronize
    if device == "mps":
        return torch.mps.synchronize
    raise ValueError(f"no clock for device {device!r}")
