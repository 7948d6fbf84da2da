"""Peak memory a block of code used on this machine, measured as docs/MEASURING.md defines it.

`track_peak(device)` yields a `PeakMemory` filled when the block ends: the process RSS
high-water mark on CPU (reset before the run through /proc/self/clear_refs, so earlier runs
don't count), and `torch.cuda.max_memory_allocated` after a reset on CUDA. The estimate of what
a run will need is `lib.estimate.memory`'s; this is what it then used.
"""

from __future__ import annotations

import contextlib
import os

import psutil


class PeakMemory:
    """Result holder filled when the `track_peak` block ends.

    `start_bytes` is only set where "peak - start" means what the block added: on CUDA (the
    allocator counts live tensors). On CPU the C allocator keeps freed memory for reuse, so after
    a warm-up the RSS barely moves and the difference would read as ~0.
    """
    peak_bytes: int | None = None
    start_bytes: int | None = None
    method: str = ""


@contextlib.contextmanager
def track_peak(device: str):
    """Measure peak memory of the block. Yields a `PeakMemory` filled on exit."""
    result = PeakMemory()
    if device == "cuda":
        import torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        result.start_bytes = torch.cuda.memory_allocated()
        result.method = "GPU memory held by tensors (torch.cuda.max_memory_allocated)"
        yield result
        torch.cuda.synchronize()
        result.peak_bytes = torch.cuda.max_memory_allocated()
        return
    _give_back_free_memory()
    resettable = _reset_rss_peak()
    result.method = ("whole process memory (RSS), highest point" if resettable
                     else "whole process memory (RSS), at the end")
    yield result
    hwm = _read_vm_hwm() if resettable else None
    result.peak_bytes = hwm if hwm is not None else psutil.Process().memory_info().rss


def _give_back_free_memory() -> None:
    """glibc keeps freed memory for reuse, so after a big repetition the process's RSS stays
    high and every later, smaller one would report the big one's peak (a sweep's points share
    one worker). malloc_trim hands the free memory back first; it runs before the timed call."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass                      # not glibc: peaks may include memory kept from earlier calls


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _read_vm_hwm() is not None
    except OSError:
        return False


def _read_vm_hwm() -> int | None:
    if not os.path.exists("/proc/self/status"):
        return None
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None
