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
import os
import time
from pathlib import Path
from typing import Any, Callable

from lib.core.errors import UnsupportedError
from lib.machine import activity, capability
from lib.machine.capability import BUSY_NOTE_START, BUSY_PERCENT, Ceilings

CACHE_FILE = "ceilings.json"
CACHE_FORMAT = 2                  # 2: the capability (figures, readings); 1 is still read
CACHE_MAX_ENTRIES = 20            # machines x torch versions kept; the oldest go first

MEASURE_ESTIMATE_S = 8.0          # what those waiting in the queue are told
# Before measuring, other programs' share is watched for QUIET_CHECK_S at a time, up to
# QUIET_WAIT_S in all, for a quiet moment: a short burst (a compile, a page load) passes.
QUIET_CHECK_S = 1.0
QUIET_WAIT_S = 4.0

_log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]     # (what is being measured, fraction done)


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
    from lib.core.metrics import format_bytes, format_operations, format_seconds

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
