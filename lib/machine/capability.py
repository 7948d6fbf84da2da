"""This machine's capability: the best ceilings known from quiet readings, never lowered by a
busy moment.

A reading of the ceilings (`lib.machine.ceilings.measure`) taken while other programs use the CPU is
what that moment allowed, not what the machine can do: on 2 cores with other programs on 44% of
the CPU it read 17.9 GB/s and 9.6 GFLOP/s bfloat16 against 35 GB/s and 430 GFLOP/s quiet. So
each figure is kept on its own as the best known from QUIET readings (other programs' share at
most QUIET_PERCENT, or unknown where the OS can't tell): memory bandwidth and matmul rates the
maximum, the per-layer overhead the minimum, each with when it was measured and the share then.
A busy reading never replaces or lowers a quiet figure; it is recorded as an attempt (one of
the last READINGS_KEPT readings, each with what became of it) and the machine is measured again
later, when quiet (`measure_again`).

Before any quiet reading exists (a first start on a busy machine) a busy reading is used,
scaled to the whole CPU: it had only (100 - share)% of the CPU, so rates are divided and the
overhead multiplied by that fraction (at most SCALE_AT_MOST times: a reading that got almost
nothing tells little). Taken raw, 83% other load read 7.7 GB/s and 7.5 GFLOP/s float32 on this
2-core VM (quiet: 35 and 199), estimates 5-25x too slow; scaled, 45 GB/s and 44 GFLOP/s. It is
rough, so every such figure is flagged provisional (in its record, with the value measured, in
`notes`, in the text) and the first quiet reading replaces them whatever its values; until then
a better busy reading may raise them.
`Ceilings` is the record itself: one device's figures (memory bandwidth, matmul rate per dtype,
per-layer overhead) with their provenance, as a reading gives them and as the cache keeps them.
Here are the record and pure functions over it: no measuring (`lib.machine.ceilings`), no
files, no torch.
"""

from __future__ import annotations

import calendar
import dataclasses
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

# Other programs taking more of the CPU than this while measuring make the figures low (on 2
# cores, one busy core halved bfloat16 matmul and worse): the ceilings say so.
BUSY_PERCENT = 10.0
BUSY_RETRY_S = 600.0              # such figures are measured again, at most this often
BUSY_NOTE_START = "Other programs used"

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


QUIET_PERCENT = BUSY_PERCENT      # other programs' CPU share up to which a reading is quiet
READINGS_KEPT = 6                 # the last readings (quiet or busy) and what became of each
SCALE_AT_MOST = 10.0              # a busy reading is scaled to the whole CPU by at most this
# A shared virtual machine's host can take a core away for seconds without any load figure
# inside showing it, so one quiet reading can still be low (here a first quiet reading gave
# estimates 60% slow where the next gave 10%): the best of a few quiet readings is the
# capability. Until it has that many, the machine is measured again when quiet, at most every
# BUSY_RETRY_S.
QUIET_READINGS_WANTED = 3
OVERHEAD = "layer_overhead_s"     # the one figure where lower is better
FLOPS = "matmul_flops_per_s"
BANDWIDTH = "memory_bandwidth_bytes_per_s"


def is_quiet(other_cpu_percent: float | None) -> bool:
    return other_cpu_percent is None or other_cpu_percent <= QUIET_PERCENT


def scale(other_cpu_percent: float | None) -> float:
    """How much more of the CPU the whole machine has than a reading taken while other
    programs took `other_cpu_percent` of it (1 when quiet)."""
    if is_quiet(other_cpu_percent):
        return 1.0
    return min(100.0 / max(100.0 - other_cpu_percent, 1e-9), SCALE_AT_MOST)


def _record(value: float, reading: Ceilings, name: str = "") -> dict[str, Any]:
    record = {"value": value, "measured_at": reading.measured_at,
              "other_cpu_percent": reading.other_cpu_percent,
              "quiet": is_quiet(reading.other_cpu_percent)}
    if not record["quiet"]:            # provisional: scaled to the whole CPU, as read kept
        factor = scale(reading.other_cpu_percent)
        record.update(value=value / factor if name == OVERHEAD else value * factor,
                      measured_value=value, scaled_by=factor)
    return record


def figures_of(ceilings: Ceilings) -> dict[str, Any]:
    """Per figure, its value with when and how quietly it was measured, shaped as the top-level
    fields (`{BANDWIDTH: rec, FLOPS: {dtype: rec}, OVERHEAD: rec}`): the kept ones, or those of
    a single reading (a reading, or ceilings kept before figures were)."""
    if ceilings.figures:
        return ceilings.figures
    found: dict[str, Any] = {BANDWIDTH: _record(ceilings.memory_bandwidth_bytes_per_s, ceilings),
                             FLOPS: {dtype: _record(value, ceilings)
                                     for dtype, value in ceilings.matmul_flops_per_s.items()}}
    if ceilings.layer_overhead_s is not None:
        found[OVERHEAD] = _record(ceilings.layer_overhead_s, ceilings, OVERHEAD)
    return found


def _flat(figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    flat = {name: record for name, record in figures.items() if name != FLOPS}
    flat.update({f"{FLOPS}/{dtype}": record for dtype, record in figures.get(FLOPS, {}).items()})
    return flat


def _nested(flat: dict[str, dict[str, Any]]) -> dict[str, Any]:
    figures: dict[str, Any] = {FLOPS: {}}
    for name, record in flat.items():
        if name.startswith(f"{FLOPS}/"):
            figures[FLOPS][name.split("/", 1)[1]] = record
        else:
            figures[name] = record
    return figures


def _better(kept: dict | None, new: dict | None, name: str) -> dict | None:
    """The record to keep: a quiet one over a busy one whatever the values, else the better
    value (the new one on a tie: it is the more recent)."""
    if kept is None or new is None:
        return new or kept
    if kept["quiet"] != new["quiet"]:
        return kept if kept["quiet"] else new
    if name == OVERHEAD:
        return new if new["value"] <= kept["value"] else kept
    return new if new["value"] >= kept["value"] else kept


_LABELS = {BANDWIDTH: "memory bandwidth", OVERHEAD: "per-layer overhead"}


def _label(name: str) -> str:
    return _LABELS.get(name) or f"{name.split('/', 1)[1]} matmul"


def merge(kept: Ceilings | None, reading: Ceilings) -> Ceilings:
    """The capability after `reading`: `kept` (None: nothing yet) with each figure the better
    of the two as the module says, and the reading recorded with what became of it."""
    old = _flat(figures_of(kept)) if kept is not None else {}
    new = _flat(figures_of(reading))
    chosen = {name: _better(old.get(name), new.get(name), name) for name in {**old, **new}}
    quiet = is_quiet(reading.other_cpu_percent)
    had_quiet = any(record["quiet"] for record in old.values())
    taken = [name for name in new if chosen[name] is new[name]]
    share = f"{reading.other_cpu_percent:.0f}%" if reading.other_cpu_percent is not None else "?"
    if quiet and old and not had_quiet:
        outcome = "quiet: replaced the provisional figures measured while busy"
    elif quiet:
        raised = [_label(name) for name in taken if name in old]
        outcome = ("quiet: " + (f"improved {', '.join(raised)}" if raised else
                                "no figure better than those kept") if old else "quiet")
    elif had_quiet:
        outcome = (f"measured while busy ({share} other load): kept the quiet figures; will "
                   "measure again when quiet")
    else:
        outcome = (f"measured while busy ({share} other load): provisional figures, scaled "
                   "to the whole CPU" + ("" if not old else "; improved " + (", ".join(
                       _label(name) for name in taken if name in old) or "none")) +
                   "; the first quiet measurement replaces them")
    entry = {"measured_at": reading.measured_at, "other_cpu_percent": reading.other_cpu_percent,
             "quiet": quiet, "outcome": outcome,
             "figures": {name: record.get("measured_value", record["value"])
                         for name, record in new.items()}}
    earlier = list(kept.readings) if kept is not None else []
    if kept is not None and not kept.readings:      # kept before readings were: its one reading
        earlier = [{"measured_at": kept.measured_at, "other_cpu_percent": kept.other_cpu_percent,
                    "quiet": is_quiet(kept.other_cpu_percent), "outcome": "kept before",
                    "figures": {name: record.get("measured_value", record["value"])
                                for name, record in old.items()}}]
    figures = _nested(chosen)
    records = list(chosen.values())
    provisional = [record for record in records if not record["quiet"]]
    shares = [r["other_cpu_percent"] for r in records if r["other_cpu_percent"] is not None]
    notes = [note for note in reading.notes if not note.startswith(BUSY_NOTE_START)]
    if provisional:
        busiest = max(provisional, key=lambda r: r["other_cpu_percent"] or 0)
        notes.append(f"Provisional: measured while other programs took "
                     f"{busiest['other_cpu_percent']:.0f}% of the CPU and scaled to the whole "
                     f"CPU (x{busiest['scaled_by']:.1f}), so rough; the first quiet measurement "
                     "replaces them, by itself, once the machine is quiet.")
    elif not quiet:
        notes.append(f"The last measurement ({reading.measured_at}) ran while other programs "
                     f"took {share} of the CPU: it was not used, the quiet figures are kept; "
                     "this machine is measured again when quiet.")
    return dataclasses.replace(
        reading,
        memory_bandwidth_bytes_per_s=figures[BANDWIDTH]["value"],
        matmul_flops_per_s={dtype: r["value"] for dtype, r in figures[FLOPS].items()},
        layer_overhead_s=figures[OVERHEAD]["value"] if OVERHEAD in figures else None,
        measured_at=max(record["measured_at"] for record in records),
        other_cpu_percent=max(shares) if shares else None,
        source=_source(reading.source, bool(provisional)), notes=tuple(notes),
        figures=figures, readings=tuple((earlier + [entry])[-READINGS_KEPT:]))


def _source(source: str, provisional: bool) -> str:
    """`measure`'s "measured on this machine <date>, torch X" as the capability's."""
    words = ("measured on this machine while busy (provisional)" if provisional else
             "best quiet measurements on this machine")
    return re.sub(r"^measured on this machine \d{4}-\d{2}-\d{2}", words, source)


def _age_s(measured_at: str, now: float) -> float:
    try:
        return now - calendar.timegm(time.strptime(measured_at, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return float("inf")


def measure_again(ceilings: Ceilings, now: float | None = None) -> str | None:
    """Why these kept figures should be measured again now, or None: "provisional" (no quiet
    reading yet, the last at least BUSY_RETRY_S old: measure, it can only help), or "after busy"
    (the last reading was busy, that long ago: measure if the machine is quiet now), or
    "confirm" (fewer than QUIET_READINGS_WANTED quiet readings, the last that long ago: measure
    if the machine is quiet now)."""
    now = time.time() if now is None else now
    last = ceilings.readings[-1] if ceilings.readings else {
        "measured_at": ceilings.measured_at, "other_cpu_percent": ceilings.other_cpu_percent}
    if _age_s(last["measured_at"], now) < BUSY_RETRY_S:
        return None
    if is_quiet(last.get("other_cpu_percent")):
        quiet = [r for r in ceilings.readings if is_quiet(r.get("other_cpu_percent"))]
        return "confirm" if ceilings.readings and len(quiet) < QUIET_READINGS_WANTED else None
    if any(not record["quiet"] for record in _flat(figures_of(ceilings)).values()):
        return "provisional"
    return "after busy"


def describe_figure(record: dict[str, Any]) -> str:
    """Where one figure came from, in a few words."""
    when = record["measured_at"].replace("T", " ").replace("Z", " UTC")
    share = record["other_cpu_percent"]
    others = "other programs' share unknown" if share is None else f"other programs {share:.0f}%"
    if record["quiet"]:
        return f"quiet, {when}, {others}"
    return (f"PROVISIONAL (measured while busy, {when}, {others}; scaled "
            f"x{record.get('scaled_by', 1.0):.1f} to the whole CPU from "
            f"{record.get('measured_value', record['value']):.3g})")


def describe_figures(ceilings: Ceilings) -> dict[str, str]:
    """`describe_figure` per flat figure name (BANDWIDTH, OVERHEAD, "matmul_flops_per_s/<dtype>")."""
    return {name: describe_figure(record)
            for name, record in _flat(figures_of(ceilings)).items()}


def last_reading(ceilings: Ceilings) -> str | None:
    """One sentence on the newest reading and what became of it, where there is one."""
    if not ceilings.readings:
        return None
    last = ceilings.readings[-1]
    return f"last measurement {last['measured_at'].replace('T', ' ').replace('Z', ' UTC')}: " \
           f"{last['outcome']}."
