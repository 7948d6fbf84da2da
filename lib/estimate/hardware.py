"""Hardware profiles for the estimator: this machine, measured, and a table of others.

`profiles()` is every profile by id: `this` (this machine, built from `lib.machine.ceilings`: sustained
bandwidth and matmul rates measured here, and the eager per-layer overhead, cached per machine
and never re-measured per call) followed by the rows of `lib/estimate/data/hardware.json` (laptop CPU,
Apple M-series, phone NPU, Jetson, A100 ... TPU v6e), each with its source. Table figures are
the vendor's published peaks (dense, per device); `measured` tells the estimator which kind of
number it holds, since a datasheet peak is never reached and a measured ceiling already is what
this machine sustains. `get(id)` refuses an unknown id with the list of known ones.
`from_ceilings` builds such a measured profile from any machine's ceilings (those a saved run
recorded: History's error ledger judges each run on its own machine).

`Hardware.peak_flops(dtype)` answers for any dtype: the figure for it, else the nearest one
the device has (`flops_dtype` names which), so a phone NPU without float32 still gets a number
and the estimator says which one it used.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lib.core.errors import UnsupportedError
from lib.core.text import one_line

if TYPE_CHECKING:
    from lib.machine.capability import Ceilings

TABLE_PATH = Path(__file__).parent / "data" / "hardware.json"
THIS = "this"
KINDS = ("cpu", "gpu", "tpu", "npu", "edge-gpu")
# Which figure answers for a dtype the device has no figure of, nearest first. float8 weights
# on a chip without float8 units are widened to 16 bits for the matmul (as fp8 weight-only
# kernels do), so they fall back to bfloat16, not to int8.
FLOPS_FALLBACK = {
    "float32": ("float32", "bfloat16", "float16"),
    "bfloat16": ("bfloat16", "float16", "float32"),
    "float16": ("float16", "bfloat16", "float32"),
    "float8": ("float8", "bfloat16", "float16", "float32"),
    "int8": ("int8", "bfloat16", "float16", "float32"),
}


@dataclass(frozen=True)
class Hardware:
    id: str
    name: str
    kind: str                                  # one of KINDS
    memory_bandwidth_bytes_per_s: float
    matmul_flops_per_s: dict[str, float] = field(hash=False)   # dtype -> dense FLOP/s (OP/s)
    memory_bytes: float = 0.0
    interconnect_bytes_per_s: float | None = None   # per device, both directions together
    source: str = ""                           # datasheet or vendor page; "measured ..." here
    interconnect: str | None = None            # "NVLink 4", "ICI", ...
    notes: str = ""                            # how figures a vendor doesn't publish were derived
    measured: bool = False                     # sustained, measured here (not datasheet peaks)
    layer_overhead_s: float | None = None      # measured eager per-layer overhead (`this` only)
    board_power_w: float | None = None         # the vendor's stated maximum draw, per device
    power_source: str = ""

    def flops_dtype(self, dtype: str) -> str:
        """The dtype whose figure answers for `dtype` (itself when the device has one)."""
        for candidate in FLOPS_FALLBACK.get(dtype, (dtype,)) + tuple(self.matmul_flops_per_s):
            if candidate in self.matmul_flops_per_s:
                return candidate
        raise UnsupportedError(f"{self.name} has no matmul figure at all: its profile is "
                               "incomplete.")

    def peak_flops(self, dtype: str) -> float:
        return self.matmul_flops_per_s[self.flops_dtype(dtype)]

    @property
    def interconnect_one_way_bytes_per_s(self) -> float | None:
        """What one device sends per second: half the published both-ways figure."""
        if self.interconnect_bytes_per_s is None:
            return None
        return self.interconnect_bytes_per_s / 2

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind,
                "memory_bandwidth_bytes_per_s": self.memory_bandwidth_bytes_per_s,
                "matmul_flops_per_s": dict(self.matmul_flops_per_s),
                "memory_bytes": self.memory_bytes,
                "interconnect": self.interconnect,
                "interconnect_bytes_per_s": self.interconnect_bytes_per_s,
                "layer_overhead_s": self.layer_overhead_s,
                "board_power_w": self.board_power_w, "power_source": self.power_source,
                "measured": self.measured, "source": self.source, "notes": self.notes}


@functools.cache
def table() -> dict[str, Hardware]:
    """The profiles of lib/estimate/data/hardware.json, by id, in the file's order."""
    rows = json.loads(TABLE_PATH.read_text(encoding="utf-8"))["profiles"]
    found = {}
    for row in rows:
        profile = Hardware(
            id=row["id"], name=row["name"], kind=row["kind"],
            memory_bandwidth_bytes_per_s=float(row["memory_bandwidth_bytes_per_s"]),
            matmul_flops_per_s={d: float(v) for d, v in row["matmul_flops_per_s"].items()},
            memory_bytes=float(row["memory_bytes"]),
            interconnect_bytes_per_s=None if row["interconnect_bytes_per_s"] is None
            else float(row["interconnect_bytes_per_s"]),
            source=row["source"], interconnect=row.get("interconnect"),
            notes=row.get("notes", ""),
            board_power_w=None if row.get("board_power_w") is None
            else float(row["board_power_w"]), power_source=row.get("power_source", ""))
        if profile.id in found or profile.id == THIS or profile.kind not in KINDS:
            raise ValueError(f"{TABLE_PATH}: bad or repeated profile {profile.id!r}")
        found[profile.id] = profile
    return found


@functools.cache
def this(device: str = "cpu") -> Hardware:
    """This machine's `device`, from its measured ceilings (cached per machine on disk by
    lib.machine.ceilings, and here per process: measured at most once, never per call)."""
    from lib.machine import devices

    if device not in devices.available_devices():
        error = UnsupportedError(f"This machine has no {device}: estimate on "
                                 f"{' or '.join(devices.available_devices())}, or pick a "
                                 "hardware profile.")
        error.cli_hint = "`python -m lib hardware` lists the profiles."
        raise error
    return from_ceilings(_machine_ceilings(device), f"This machine ({_device_label(device)})",
                         float(_memory_bytes(device)), device)


def from_ceilings(ceilings: Ceilings, name: str, memory_bytes: float = 0.0,
                  device: str | None = None) -> Hardware:
    """A measured profile (id `this`) from a machine's `lib.machine.capability.Ceilings`: this machine's,
    or those recorded with a saved run (`environment["ceilings"]`), so a run measured elsewhere
    is estimated on its own machine. `memory_bytes` only feeds the memory verdict; `device`
    (default: the ceilings') says whether it is a CPU or a GPU."""
    device = device or ceilings.device
    return Hardware(
        id=THIS, name=name, kind="cpu" if device == "cpu" else "gpu",
        memory_bandwidth_bytes_per_s=ceilings.memory_bandwidth_bytes_per_s,
        matmul_flops_per_s=dict(ceilings.matmul_flops_per_s),
        memory_bytes=memory_bytes, source=ceilings.source,
        notes="Measured on the machine itself: sustained bandwidth (a copy over buffers far "
              "larger than the caches) and matmul rates, not datasheet peaks.",
        measured=True, layer_overhead_s=ceilings.layer_overhead_s)


def profiles() -> dict[str, Hardware]:
    """Every profile by id: `this` (measured here, CPU) first, then the table."""
    return {THIS: this("cpu"), **table()}


def ids() -> tuple[str, ...]:
    """Every profile id, without measuring anything."""
    return (THIS, *table())


def get(hardware_id: str, device: str = "cpu") -> Hardware:
    """One profile; `this` is this machine's `device`. UnsupportedError lists the ids."""
    if hardware_id == THIS:
        return this(device)
    try:
        return table()[hardware_id]
    except (KeyError, TypeError):
        error = UnsupportedError(
            f"No hardware profile {one_line(repr(hardware_id), 80)}: choose one of "
            f"{', '.join(ids())}.")
        error.cli_hint = "`python -m lib hardware` lists them with their figures and sources."
        raise error from None


def _machine_ceilings(device: str):
    """The cached ceilings, else measured now. Measuring takes the measurement slot, which is
    not re-entrant: from inside a run or sweep of this process it would wait for itself, so
    it is refused there (estimates check `this` before the slot is taken, which measures)."""
    import os

    from lib.machine import ceilings, runlock

    found = ceilings.cached(device)
    if found is not None:
        return found
    holder = runlock.current_holder()
    if holder is not None and holder.get("pid") == os.getpid():
        error = UnsupportedError(
            f"This machine's {device} ceilings are not measured yet, and measuring them now "
            "would wait for the very run that asks: run once on this machine (that measures "
            "them), then estimate again.")
        error.cli_hint = "`python -m lib machine` measures them."
        raise error
    return ceilings.machine_ceilings(device)


def _device_label(device: str) -> str:
    from lib.machine import devices
    from lib.machine.environment import cpu_model
    return f"{cpu_model()}, measured" if device == "cpu" else \
        f"{devices.device_name(device)}, measured"


def _memory_bytes(device: str) -> int:
    if device == "cuda":
        import torch
        return torch.cuda.get_device_properties(0).total_memory
    import psutil
    return psutil.virtual_memory().total      # MPS shares the system memory
