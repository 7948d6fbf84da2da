"""The environment a measurement ran in, recorded with it so numbers can be compared honestly.

A latency means little without the machine, library versions and thread count behind it; this
module collects them into a plain dict (JSON-ready) at the end of each run.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import psutil


def _version(package: str) -> str | None:
    """The installed version, read from the package's metadata (importing torch takes seconds)."""
    from importlib import metadata
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def capture_environment(device: str, threads: int) -> dict[str, Any]:
    import lib

    env: dict[str, Any] = {
        "measured_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "app_version": lib.__version__,
        "python": platform.python_version(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "os": f"{platform.system()} {platform.release()}",
        "cpu_model": cpu_model(),
        "cpu_logical_cores": os.cpu_count(),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "torch_threads": threads,
        "total_memory_bytes": psutil.virtual_memory().total,
        "device": device,
    }
    if device == "cuda":
        import torch
        props = torch.cuda.get_device_properties(0)
        env.update(gpu_name=props.name, gpu_memory_bytes=props.total_memory,
                   cuda_version=torch.version.cuda)
    return env


def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags (/proc/cpuinfo, Linux), e.g. "avx512_bf16"; empty where
    the system doesn't say."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
