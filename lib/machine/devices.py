"""Which devices and number formats this machine can run, asked of torch, never assumed.

`available_devices()` offers CUDA and MPS only when torch sees them. `check_supported()` runs a
tiny matrix product in the requested dtype on the device, because support differs by hardware
generation and torch build in ways no table keeps up with; a failure becomes an `UnsupportedError`
that says what to pick instead.

torch is imported only where a question needs it: on a CPU-only torch build (its version ends in
`+cpu`) the CPU is the only device and float32 always multiplies, so the CLI's checks of a plain
CPU run cost no torch import (about 1.5 s) in the parent process that only starts the worker.
"""

from __future__ import annotations

import functools
import importlib.metadata
import sys
from typing import TYPE_CHECKING

from lib.core.errors import UnsupportedError
from lib.core.spec import DTYPES
from lib.core.stacks import FORMATS

if TYPE_CHECKING:
    import torch

# The formats torch computes in directly (int8 is a quantization of float32 weights, the block
# formats belong to other stacks).
TORCH_FORMATS = tuple(f.name for f in FORMATS.values() if f.torch_dtype is not None)


def torch_dtype(dtype: str) -> "torch.dtype":
    """torch's dtype for a format it computes in (`Format.torch_dtype`); KeyError otherwise."""
    name = FORMATS[dtype].torch_dtype if dtype in FORMATS else None
    if name is None:
        raise KeyError(dtype)
    import torch
    return getattr(torch, name)


@functools.cache
def _cpu_only_build() -> bool:
    """True when the installed torch cannot see a GPU at all: a CPU build, not on a Mac (MPS)."""
    if sys.platform == "darwin":
        return False
    try:
        return importlib.metadata.version("torch").endswith("+cpu")
    except importlib.metadata.PackageNotFoundError:
        return False


def available_devices() -> list[str]:
    if _cpu_only_build():
        return ["cpu"]
    import torch
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def device_name(device: str) -> str:
    """A human name for the device, e.g. the GPU model."""
    if device == "cuda":
        import torch
        return torch.cuda.get_device_name(0)
    if device == "mps":
        return "Apple GPU (MPS)"
    return "CPU"


INT8_DEVICES = ("cpu",)     # torch.ao dynamic quantization has CPU kernels only


def supported_dtypes(device: str) -> list[str]:
    """The number formats to offer on `device`, in the order to show them."""
    return [d for d in DTYPES if d in TORCH_FORMATS or device in INT8_DEVICES]


@functools.cache
def check_supported(device: str, dtype: str) -> None:
    """Raise UnsupportedError unless `device` is present and can multiply matrices in `dtype`."""
    if device not in available_devices():
        raise UnsupportedError(
            f"Device {device!r} is not available on this machine (torch sees: "
            f"{', '.join(available_devices())}). Choose one of those.")
    if device == "cpu" and dtype == "float32":
        return                      # every torch build multiplies float32 on the CPU
    import torch
    if dtype == "int8":
        if device not in INT8_DEVICES:
            raise UnsupportedError(
                f"int8 here means torch's dynamic quantization, which only has CPU kernels; "
                f"{device_name(device)} can't run it. Choose float16 or bfloat16 on the GPU, or "
                "int8 on the CPU.")
        if "qnnpack" not in torch.backends.quantized.supported_engines and \
                "x86" not in torch.backends.quantized.supported_engines and \
                "fbgemm" not in torch.backends.quantized.supported_engines:
            raise UnsupportedError("This torch build has no int8 CPU kernels: choose float32.")
        return
    if dtype not in TORCH_FORMATS:
        raise UnsupportedError(f"Unknown dtype {dtype!r}: choose one of {', '.join(TORCH_FORMATS)}.")
    try:
        probe = torch.ones(4, 4, dtype=torch_dtype(dtype), device=device)
        (probe @ probe).sum().item()
    except (RuntimeError, TypeError) as exc:
        raise UnsupportedError(
            f"{device_name(device)} cannot compute in {dtype} here ({exc}). Choose float32, "
            "or another device.") from exc
