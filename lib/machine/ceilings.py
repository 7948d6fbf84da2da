"""This machine's ceilings: how fast its memory and its arithmetic can possibly go, measured.

`measure(device)` takes a few seconds and finds, on the CPU or a CUDA/MPS GPU:
- sustained memory bandwidth: a copy (a = b) and a triad (a = b + 3c) over float32 buffers far
  larger than the last-level cache, counted as bytes read plus bytes written per second, the
  best of a few repeats of each, the better kernel reported;
- dense matmul throughput per dtype, 2 FLOPs per multiply-add, through `F.linear` (the call a
  model's Linear layers make) on square matrices grown until one product takes a few ms;
  int8 through the kernel the app's int8 runs use (dynamic-quantized Linear on the CPU,
  `torch._int_mm` on CUDA), or skipped with the reason in `notes`;
- the fixed cost per decoder layer of one eager-transformers decode step: two tiny random-weight
  Llama-shaped models that differ only in layer count are timed decoding token by token, and the
  difference per layer is the slope. Their arithmetic is negligible, so the slope is Python and
  kernel-launch overhead, which no bandwidth or FLOP figure explains.
The kernels are in `lib.machine.probes`; they time through `lib.core.timing.DeviceClock` (waiting for the
GPU before every clock reading), with the threads the app uses by default
(`lib.core.spec.default_threads()`), restoring torch's setting afterwards. Other programs' share of
the CPU meanwhile is recorded (`lib.machine.activity`): above BUSY_PERCENT the figures carry a note
that they are probably low.

Before measuring it waits up to QUIET_WAIT_S for a quiet moment (then measures anyway).

`machine_ceilings()` gives this machine's capability (`lib.machine.capability`): per machine (CPU model,
cores, memory, GPU, torch version) the best figures known from quiet readings, kept as JSON in
`lib.core.paths.cache_dir()`; a busy reading never lowers them. `refresh=True` measures again (and
merges); figures only measured while busy are measured again after BUSY_RETRY_S, and after a
busy attempt the machine is measured again once it is quiet. A cache file that can't be read
or makes no sense is measured over, never a traceback; the format-1 layout (one reading per
machine) is read as that one reading. Measuring takes the
machine-wide measurement slot (`lib.machine.runlock`), so it never overlaps a run. Importing this
module needs neither torch nor Streamlit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lib.machine import activity
from lib.core.errors import UnsupportedError

CACHE_FILE = "ceilings.json"
CACHE_FORMAT = 2                  # 2: the capability (figures, readings); 1 is still read
CACHE_MAX_ENTRIES = 20            # machines x torch versions kept; the oldest go first

MEASURE_ESTIMATE_S = 8.0          # what those waiting in the queue are told
# Other programs taking more of the CPU than this while measuring make the figures low (on 2
# cores, one busy core halved bfloat16 matmul and worse): the ceilings say so.
BUSY_PERCENT = 10.0
BUSY_RETRY_S = 600.0              # such figures are measured again, at most this often
BUSY_NOTE_START = "Other programs used"
# Before measuring, other programs' share is watched for QUIET_CHECK_S at a time, up to
# QUIET_WAIT_S in all, for a quiet moment: a short burst (a compile, a page load) passes.
QUIET_CHECK_S = 1.0
QUIET_WAIT_S = 4.0

_log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]     # (what is being measured, fraction done)


@dataclass(frozen=True)
class Ceilings:
    device: str                                  # "cpu" | "cuda" | "mps"
    memory_bandwidth_bytes_per_s: float          # sustained: copy/triad, buffers >> LLC
    matmul_flops_per_s: dict[str, float] = field(hash=False)   # dtype -> dense FLOP/s
    layer_overhead_s: float | None = None        # eager decode: fixed cost per layer per step
    source: str = ""                             # "measured on this machine <date>, torch X"
    device_name: str = ""                        # e.g. the CPU or GPU model
    threads: int | None = None                   # CPU threads used while measuring
    measured_at: str = ""                        # UTC, ISO 8601
    measure_s: float | None = None               # how long measuring took
    other_cpu_percent: float | None = None       # CPU other programs took meanwhile
    notes: tuple[str, ...] = ()                  # dtypes skipped and why, kernels used
    details: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # The capability's provenance (`lib.machine.capability`): per figure its value, when it was
    # measured, the other programs' share then and whether that was quiet; the last readings.
    figures: dict[str, Any] = field(default_factory=dict, hash=False)
    readings: tuple[dict[str, Any], ...] = field(default=(), hash=False)

    def peak_flops(self, dtype: str) -> float:
        """The dtype's matmul FLOP/s, else float32's (the reference every device has)."""
        return self.matmul_flops_per_s.get(dtype, self.matmul_flops_per_s["float32"])

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["notes"] = list(self.notes)
        values["readings"] = list(self.readings)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Ceilings":
        """Ceilings from `to_dict`'s output; ValueError for anything that doesn't make sense."""
        if not isinstance(values, dict):
            raise ValueError("not an object")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in values.items() if key in known}
        flops = values.get("matmul_flops_per_s")
        if not isinstance(flops, dict) or "float32" not in flops:
            raise ValueError("matmul_flops_per_s has no float32 figure")
        for name, value in [("memory_bandwidth_bytes_per_s",
                             values.get("memory_bandwidth_bytes_per_s")), *flops.items()]:
            if not _positive(value):
                raise ValueError(f"{name} is not a positive number: {value!r}")
        overhead = values.get("layer_overhead_s")
        if overhead is not None and not (_number(overhead) and overhead >= 0):
            raise ValueError(f"layer_overhead_s is not a number of seconds: {overhead!r}")
        busy = values.get("other_cpu_percent")
        if busy is not None and not _number(busy):
            raise ValueError(f"other_cpu_percent is not a number: {busy!r}")
        if values.get("device") not in ("cpu", "cuda", "mps"):
            raise ValueError(f"unknown device {values.get('device')!r}")
        for name in ("source", "device_name", "measured_at"):
            if not isinstance(values.get(name, ""), str):
                raise ValueError(f"{name} is not text")
        notes = values.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ValueError("notes is not a list of text")
        values["notes"] = tuple(notes)
        if not isinstance(values.get("details", {}), dict):
            raise ValueError("details is not an object")
        _check_provenance(values)
        return cls(**values)


def _check_provenance(values: dict[str, Any]) -> None:
    """`figures` and `readings` as `lib.machine.capability` writes them (ValueError otherwise)."""
    figures = values.get("figures", {})
    if not isinstance(figures, dict) or not isinstance(figures.get("matmul_flops_per_s", {}),
                                                       dict):
        raise ValueError("figures is not an object of figures")
    records = [r for name, r in figures.items() if name != "matmul_flops_per_s"]
    records += list(figures.get("matmul_flops_per_s", {}).values())
    for record in records:
        if not (isinstance(record, dict) and _number(record.get("value")) and
                isinstance(record.get("measured_at"), str) and
                isinstance(record.get("quiet"), bool)):
            raise ValueError(f"a figure's record makes no sense: {record!r}")
    readings = values.get("readings", [])
    if not isinstance(readings, (list, tuple)) or not all(
            isinstance(r, dict) and isinstance(r.get("measured_at"), str) and
            isinstance(r.get("outcome"), str) for r in readings):
        raise ValueError("readings is not a list of readings")
    values["readings"] = tuple(readings)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


# --- measuring ---------------------------------------------------------------------------------

def measure(device: str = "cpu", on_progress: Progress | None = None) -> Ceilings:
    """Measure `device`'s ceilings now (a few seconds); see the module for what and how."""
    import torch

    from lib.machine import probes
    from lib.machine.devices import available_devices, device_name
    from lib.core.spec import default_threads
    from lib.core.timing import DeviceClock

    if device not in available_devices():
        raise UnsupportedError(f"Device {device!r} is not available on this machine (torch "
                               f"sees: {', '.join(available_devices())}). Choose one of those.")
    tell = on_progress or (lambda what, fraction: None)
    clock = DeviceClock(device)
    threads, before = default_threads(), torch.get_num_threads()
    _wait_for_quiet(tell)
    started = time.perf_counter()
    notes: list[str] = []
    details: dict[str, Any] = {}
    torch.set_num_threads(threads)
    try:
        with activity.watch() as load, probes.failures_explained(device):
            bandwidth, flops, overhead = probes.measure_all(device, clock, tell, notes, details)
    finally:
        torch.set_num_threads(before)
        if device == "cuda":
            torch.cuda.empty_cache()     # give the buffers back: free memory is read by runs
    tell("done", 1.0)
    busy = load.other_cpu_percent
    if busy is not None and busy > BUSY_PERCENT:
        notes.append(f"{BUSY_NOTE_START} {busy:.0f}% of the CPU while this was measured, so "
                     "these figures are probably too low: they are measured again when the "
                     "machine is quiet.")
    measured_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    threads_used = f", {threads} threads" if device == "cpu" else ""
    return Ceilings(
        device=device, memory_bandwidth_bytes_per_s=bandwidth, matmul_flops_per_s=flops,
        layer_overhead_s=overhead,
        source=f"measured on this machine {measured_at[:10]}, torch {torch.__version__}"
               f"{threads_used}",
        device_name=_device_name(device, device_name), threads=threads, measured_at=measured_at,
        measure_s=time.perf_counter() - started, other_cpu_percent=busy, notes=tuple(notes),
        details=details)


def _wait_for_quiet(tell: Progress) -> None:
    """Up to QUIET_WAIT_S for other programs' share to drop to BUSY_PERCENT (a busy reading
    is kept only as an attempt, `lib.machine.capability`); then measuring goes on either way."""
    waited = 0.0
    while waited < QUIET_WAIT_S:
        busy = activity.sample(QUIET_CHECK_S).other_cpu_percent
        waited += QUIET_CHECK_S
        if busy is None or busy <= BUSY_PERCENT:
            return
        tell(f"waiting for a quieter moment (other programs use {busy:.0f}% of the CPU)", 0.0)


def _device_name(device: str, device_name: Callable[[str], str]) -> str:
    if device == "cpu":
        from lib.machine.environment import cpu_model
        return cpu_model()
    return device_name(device)


# --- cached per machine ------------------------------------------------------------------------

def machine_identity(device: str) -> dict[str, Any]:
    """What the ceilings depend on: the CPU (model, cores), memory, the GPU, torch's version."""
    from importlib import metadata

    import psutil

    from lib.machine.environment import cpu_model
    from lib.core.spec import default_threads

    identity: dict[str, Any] = {
        "device": device, "cpu_model": cpu_model(), "cpu_cores": os.cpu_count(),
        "threads": default_threads(), "memory_bytes": psutil.virtual_memory().total,
        "torch": metadata.version("torch"), "format": CACHE_FORMAT}
    if device != "cpu":
        from lib.machine.devices import device_name
        identity["gpu"] = device_name(device)
    return identity


def cache_path() -> Path:
    from lib.core.paths import cache_dir
    return cache_dir() / CACHE_FILE


def _read_cache() -> list[dict]:
    """The cache's entries; an unreadable or damaged file reads as empty (and is measured
    over), with the reason in the log."""
    path = cache_path()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        _log.warning("ignoring the damaged ceilings cache %s (%s)", path, exc)
        return []
    entries = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        _log.warning("ignoring the ceilings cache %s: no list of entries", path)
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("machine"), dict)]


def _same_machine(kept: dict[str, Any], identity: dict[str, Any]) -> bool:
    """The format written beside the identity is not part of it: format 1 entries still count."""
    return {k: v for k, v in kept.items() if k != "format"} == \
        {k: v for k, v in identity.items() if k != "format"}


def cached(device: str = "cpu") -> Ceilings | None:
    """This machine's capability measured before, if any (and if it makes sense), with each
    figure's provenance (`figures`) filled in."""
    from lib.machine import capability

    identity = machine_identity(device)
    for entry in reversed(_read_cache()):            # the newest entry for this machine
        if _same_machine(entry["machine"], identity):
            try:
                found = Ceilings.from_dict(entry.get("ceilings"))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                _log.warning("ignoring damaged cached ceilings for %s (%s)", device, exc)
                return None
            return dataclasses.replace(found, figures=capability.figures_of(found))
    return None


def _write_cache(identity: dict[str, Any], ceilings: Ceilings) -> None:
    entries = [e for e in _read_cache() if not _same_machine(e["machine"], identity)]
    entries = (entries + [{"machine": identity, "ceilings": ceilings.to_dict()}])
    entries = entries[-CACHE_MAX_ENTRIES:]
    path = cache_path()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps({"format": CACHE_FORMAT, "entries": entries}, indent=1,
                                        allow_nan=False), encoding="utf-8")
        os.replace(temporary, path)              # readers see the old file or the new one
    except (OSError, ValueError) as exc:
        # Not fatal: the ceilings are measured and returned; the next call measures again.
        _log.warning("could not keep the ceilings in %s (%s)", path, exc)
        temporary.unlink(missing_ok=True)


def machine_ceilings(device: str = "cpu", refresh: bool = False,
                     on_progress: Progress | None = None,
                     on_wait: Callable[[str], None] | None = None) -> Ceilings:
    """This machine's capability on `device` (`lib.machine.capability`): from the cache, else
    measured (and kept); `refresh` measures again and merges the reading in.

    Measuring waits for the measurement slot (`on_wait` hears the waiting notice); figures
    someone measured meanwhile are used instead, unless `refresh`."""
    from lib.machine import capability
    from lib.machine.runlock import measurement_slot

    kept = cached(device)
    if not refresh and kept is not None and not _measure_again(kept, check_quiet=True):
        return kept
    with measurement_slot(f"measuring this machine's {device} ceilings", on_wait=on_wait,
                          estimate_s=MEASURE_ESTIMATE_S):
        kept = cached(device)
        if not refresh and kept is not None and not _measure_again(kept, check_quiet=False):
            return kept
        found = capability.merge(kept, measure(device, on_progress))
        _write_cache(machine_identity(device), found)
    return found


def _measure_again(kept: Ceilings, check_quiet: bool) -> bool:
    """Provisional figures (measured busy) once BUSY_RETRY_S old; quiet ones after a busy
    attempt that long ago only when the machine is quiet now (`check_quiet`: a QUIET_CHECK_S
    look; else taken as decided)."""
    from lib.machine import capability

    why = capability.measure_again(kept)
    if why not in ("after busy", "confirm") or not check_quiet:
        return why is not None
    return capability.is_quiet(activity.sample(QUIET_CHECK_S).other_cpu_percent)


def available(refresh: bool = False, on_progress: Progress | None = None,
              on_wait: Callable[[str], None] | None = None) -> dict[str, Ceilings]:
    """Ceilings of the CPU, and of CUDA and MPS when present."""
    from lib.machine.devices import available_devices
    return {device: machine_ceilings(device, refresh, on_progress, on_wait)
            for device in available_devices()}


def describe(ceilings: Ceilings) -> list[str]:
    """A few lines for people: the figures with their units, where each came from (a quiet
    reading, or provisional: measured while busy), and what became of the last reading."""
    from lib.machine import capability
    from lib.core.metrics import format_bytes, format_seconds
    from lib.estimate.roofline import format_operations

    origin = capability.describe_figures(ceilings)
    name = f" ({ceilings.device_name})" if ceilings.device_name else ""
    lines = [f"{ceilings.device}{name}: {ceilings.source}",
             f"  memory bandwidth    {format_bytes(ceilings.memory_bandwidth_bytes_per_s)}/s "
             f"(read + written); {origin[capability.BANDWIDTH]}"]
    for dtype, flops in ceilings.matmul_flops_per_s.items():
        lines.append(f"  matmul {dtype:<12} {format_operations(flops)} operations/s; "
                     f"{origin[f'{capability.FLOPS}/{dtype}']}")
    if ceilings.layer_overhead_s is not None:
        lines.append(f"  per-layer overhead  {format_seconds(ceilings.layer_overhead_s)} per "
                     "decoder layer per decode step (eager transformers); "
                     f"{origin[capability.OVERHEAD]}")
    lines += [f"  note: {note}" for note in ceilings.notes]
    last = capability.last_reading(ceilings)
    if last:
        lines.append(f"  {last}")
    if ceilings.measure_s is not None:
        lines.append(f"  measuring took {ceilings.measure_s:.1f} s")
    return lines
