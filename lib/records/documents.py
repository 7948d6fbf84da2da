"""Runs and sweeps <-> the JSON documents the store keeps and exports.

Saving belongs here, not in the pages or the CLI: `save_run` and `SweepRecorder` save as results
arrive (to the default store unless given one) and turn a store failure into a `problem`
message instead of an error: a measurement is never lost because the history could not be
written. A run's document is `lib.records.export.to_dict`'s (the raw `lib.core.results` document plus its
summary); `measurement_from_document` and `sweep_from_document` rebuild results from raw
timestamps, so every statistic and chart of a saved result is derived as on the day it was
measured. Both check every field they read (`lib.core.schema`) and name the one that is wrong.

Opening a saved entry is `open_entry`: everything History shows and exports for it (summary,
metric cards, the sweep's tidy table, the CSV), built at once, or `DamagedEntryError` saying why
not. An entry edited by hand or written by another version never reaches a page as a traceback,
and an import is opened the same way before it is stored (`lib.records.imports`).

It also says, in words, what an entry is (`entry_label`: the factor varied, its values and the
models a sweep really ran; `estimate_words` and `provenance_mark`: that its numbers are
estimates, not measurements) and how saved settings differ (`settings_differences`). Every save
takes an optional `owner` (lib.access.classroom's id of the browser session that measured it); without
one the entry belongs to the host, as before classroom mode existed. Saves also take an
`on_wait`, told when a save waits for a database another program keeps locked; a result is
never called saved unless the store committed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from lib.records import export, table
from lib.core import results, schema, stats, text
from lib.core.results import Measurement
from lib.core.spec import RunSpec, field_info
from lib.core.stacks import TRANSFORMERS
from lib.records.store import DamagedEntryError, Store, StoreError
from lib.measure.factors import FACTORS
from lib.measure.sweep_points import PointResult, SweepResult
from lib.core.stacks import format_name, stack_name

# A run's label names these settings; a stack setting is named only when it isn't the default.
STACK_FIELDS = ("attention", "kv_cache", "compile")


def run_document(measurement: Measurement, summary: stats.Summary) -> dict[str, Any]:
    return export.to_dict(measurement, summary)


def measurement_from_document(document: Any, path: str = "") -> Measurement:
    return results.from_dict(document, path)


def sweep_document(base: RunSpec, factors: list[str], planned: int) -> dict[str, Any]:
    return {"base": base.to_dict(), "factors": factors, "planned": planned}


def point_document(point: PointResult) -> dict[str, Any]:
    """One point as saved. Points are saved as they finish (estimates first, say); `index`,
    the point's place in the grid, puts them back in the grid's order when reopened."""
    return {"values": point.values, "index": point.index, "skipped_reason": point.skipped_reason,
            "seconds": point.seconds,
            "spec": point.spec.to_dict() if point.spec else None,
            "measurement": run_document(point.measurement, point.summary)
            if point.measured else None}


def sweep_from_document(document: Any, path: str = "") -> SweepResult:
    """A sweep and its points, every field checked (DocumentError names the wrong one). Each
    point's values must hold a value of the right kind for every factor: the table, labels and
    charts are drawn from them."""
    document = schema.mapping(document, path)
    base = results.spec_from_saved(schema.member(document, "base", path, required=True),
                                   schema.at(path, "base"))
    where = schema.at(path, "factors")
    names = schema.items(schema.member(document, "factors", path, required=True), where)
    factors = [schema.choice(name, schema.at(where, index), FACTORS)
               for index, name in enumerate(names)]
    if not 1 <= len(set(factors)) == len(factors) <= 2:
        raise schema.DocumentError(f"{where}: expected one factor, or two different ones")
    where = schema.at(path, "points")
    points = [_point(point, schema.at(where, index), factors, index) for index, point in
              enumerate(schema.optional(document, "points", path, schema.items) or [])]
    points.sort(key=lambda point: point.index)          # the grid's order, not finishing order
    planned = schema.optional(document, "planned", path, schema.number, 0, whole=True)
    return SweepResult(base, factors, points=points, stopped=document.get("status") == "partial",
                       planned=len(points) if planned is None else planned)


def _point(document: Any, path: str, factors: list[str], position: int) -> PointResult:
    """A saved point; without a saved `index` (older versions), its place in the file."""
    document = schema.mapping(document, path)
    where = schema.at(path, "values")
    saved = schema.mapping(schema.member(document, "values", path, required=True), where)
    values = {}
    for name in factors:
        value = schema.member(saved, name, where, required=True)
        values[name] = schema.number(value, schema.at(where, name), whole=True) \
            if FACTORS[name].numeric else schema.string(value, schema.at(where, name))
    point = PointResult(
        values=values,
        skipped_reason=schema.optional(document, "skipped_reason", path, schema.string),
        seconds=schema.optional(document, "seconds", path, schema.number, 0) or 0.0)
    index = schema.optional(document, "index", path, schema.number, 0, whole=True)
    point.index = position if index is None else index
    if document.get("measurement") is not None:
        point.measurement = measurement_from_document(document["measurement"],
                                                      schema.at(path, "measurement"))
        point.spec = point.measurement.spec
        point.summary = stats.summarize(point.measurement)
    return point


@dataclass(frozen=True)
class Opened:
    """A saved run or sweep rebuilt from its raw data, with everything History shows of it."""
    kind: str                                  # "run" or "sweep"
    rows: list[dict[str, Any]]                 # its CSV: a run's summary row, a sweep's table
    measurement: Measurement | None = None     # a run's
    summary: stats.Summary | None = None
    cards: list[dict[str, str]] = field(default_factory=list)
    memory_sentence: str | None = None
    sweep: SweepResult | None = None           # a sweep's
    display_rows: list[dict[str, Any]] = field(default_factory=list)
    load: Any = None                           # a load run's (lib.serving.summary.LoadResult)

    @property
    def csv(self) -> str:
        return table.to_csv(self.rows)


def open_entry(document: Any, entry_id: int | None = None) -> Opened:
    """An exported entry (`Store.export`'s document) opened as History shows it.

    Raises DamagedEntryError, naming the field when a check finds it, for any document that
    can't be: written by another version, edited by hand, or a bug of this one. `entry_id`
    only makes the message say which entry.
    """
    which = f"#{entry_id}" if entry_id is not None else "It"
    try:
        return _open(document)
    except schema.DocumentError as exc:
        raise DamagedEntryError(which, str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - what no check foresaw is still one entry's problem
        raise DamagedEntryError(which, f"{type(exc).__name__}: "
                                       f"{text.one_line(exc, limit=300)}") from exc


def _open(document: Any) -> Opened:
    document = schema.mapping(document, "")
    kind = schema.choice(schema.member(document, "kind", "", required=True), "kind",
                         ("run", "sweep", "load"))
    if kind == "load":
        from lib.serving import summary as load_report
        loaded = load_report.from_dict(document)
        rows = load_report.level_rows(loaded)
        return Opened(kind, rows, load=loaded, display_rows=rows)
    if kind == "sweep":
        result = sweep_from_document(document)
        rows = table.rows(result)
        return Opened(kind, rows, sweep=result,
                      display_rows=table.display_rows(rows, result.factors))
    measurement = measurement_from_document(document)
    summary = stats.summarize(measurement)
    return Opened(kind, [export.summary_row(measurement, summary)], measurement, summary,
                  export.metric_cards(measurement, summary), export.memory_sentence(measurement))


def save_run(measurement: Measurement, summary: stats.Summary,
             store: Store | None = None, owner: str | None = None,
             on_wait: Callable[[str], None] | None = None) -> tuple[int | None, str | None]:
    """(entry id, None) when saved; (None, why not) when the history can't be written.
    `owner`: the classroom owner id of whoever ran it (None: the host, the CLI). `on_wait`
    hears that the database is locked by another program and the save waits for it."""
    store = store or Store()
    if on_wait is not None:
        store.on_wait = on_wait
    try:
        return store.save_run(run_document(measurement, summary), owner=owner), None
    except StoreError as exc:
        return None, str(exc)


class SweepRecorder:
    """Saves a sweep point by point; after a store failure it stops trying and says why."""

    def __init__(self, base: RunSpec, factors: list[str], planned: int,
                 store: Store | None = None, owner: str | None = None,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.store, self.entry_id, self.problem = store or Store(), None, None
        if on_wait is not None:          # a locked database: said once per save that waits
            self.store.on_wait = on_wait
        try:
            self.entry_id = self.store.start_sweep(sweep_document(base, factors, planned),
                                                   owner=owner)
        except StoreError as exc:
            self.problem = str(exc)
        self.position = 0

    def add(self, point: PointResult) -> None:
        if self.entry_id is None:
            return
        try:
            self.store.add_sweep_point(self.entry_id, self.position, point_document(point))
            self.position += 1
        except StoreError as exc:
            self.problem, self.entry_id = str(exc), None

    def finish(self, stopped: bool) -> None:
        if self.entry_id is None:
            return
        try:
            self.store.finish_sweep(self.entry_id, stopped)
        except StoreError as exc:
            self.problem = str(exc)


# --- words for people ------------------------------------------------------------------------

def _distinct(values: list[Any]) -> list[Any]:
    """In order of first appearance; by their text, so that a damaged entry's values (lists,
    objects) can't stop the listing."""
    seen: dict[str, Any] = {}
    for value in values:
        seen.setdefault(str(value), value)
    return list(seen.values())


def _listed(values: list[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _named(words: Callable[[str], str], value: Any) -> str:
    """A value as people read it ('ONNX Runtime', 'Q4_K_M'); a damaged one as it was saved."""
    return words(value) if isinstance(value, str) else str(value)


def entry_label(entry: dict[str, Any]) -> str:
    """What a History entry is, from what it measured (a `Store.list` entry), e.g.
    'batch size sweep: 1, 8 — smollm2-135m-instruct', 'model sweep: gpt2, smollm2-360m',
    'run: gpt2, batch 2, prompt 16, output 5, float32'."""
    if entry["kind"] == "run":
        return "run: " + run_settings_text({"model_id": entry["model_id"],
                                            **(entry.get("spec") or {})})
    if entry["kind"] == "load":
        return "load sweep: " + load_words(entry.get("plan") or {}) + f" — {entry['model_id']}"
    factors = [name for name in entry.get("factors") or [] if name in FACTORS]
    if not factors:
        return f"sweep — {_listed(entry['models'])}"
    title = " × ".join(FACTORS[name].label for name in factors)
    values = []
    for name in factors:
        if name == "model":
            values.append(_listed(entry["models"]) or "no model measured yet")
        else:
            chosen = _distinct([v.get(name) for v in entry["point_values"] if name in v])
            values.append(_listed([_named(FACTORS[name].value_label, v) for v in chosen])
                          or "no points yet")
    label = f"{title} sweep: {' × '.join(values)}"
    if "model" not in factors:
        label += f" — {_listed(entry['models'])}"
    if "stack" not in factors and entry.get("stack") not in (None, TRANSFORMERS):
        label += f" on {stack_name(entry['stack'])}"
    if entry.get("skipped"):
        label += f" ({entry['skipped']} skipped)"
    return label


def load_words(plan: dict[str, Any]) -> str:
    """A load run's levels in words: '0.5, 1, 2 requests/s' or '1, 4, 16 concurrent'."""
    levels = plan.get("levels") if isinstance(plan.get("levels"), list) else []
    shown = ", ".join(f"{level:g}" for level in levels if isinstance(level, int | float)) or "?"
    return shown + (" concurrent" if plan.get("mode") == "concurrency" else " requests/s")


def hardware_words(hardware_id: str, gpus: int) -> str:
    """'NVIDIA H200 SXM 141GB x 8': a hardware profile by its name (`this`: this machine's
    measured ceilings; an id this version doesn't know, as it was saved)."""
    from lib.estimate import hardware

    if hardware_id == hardware.THIS:
        name = "this machine (its measured ceilings)"
    else:
        profile = hardware.table().get(hardware_id)
        name = profile.name if profile is not None else hardware_id
    return f"{name} x {gpus}"


def estimate_words(opened: Opened) -> str | None:
    """How an opened entry says it holds estimates, None when all of it was measured:
    'ESTIMATE (not measured) from a model of NVIDIA H200 SXM 141GB x 1'; a sweep mixing both
    names the hardware its estimated points were modelled on."""
    if opened.kind == "load":
        return None                      # a server under load is always measured
    if opened.kind == "run":
        measurements = [opened.measurement]
    else:
        measurements = [p.measurement for p in opened.sweep.points if p.measured]
    estimated = [m for m in measurements if not m.measured]
    if not estimated:
        return None
    models = _listed(_distinct([hardware_words(m.spec.hardware or "?", m.spec.gpus)
                                for m in estimated]))
    if len(estimated) == len(measurements):
        return f"ESTIMATE (not measured) from a model of {models}"
    return (f"PARTLY ESTIMATED: {len(estimated)} of {len(measurements)} points come from a "
            f"model of {models}, not a measurement")


def provenance_mark(entry: dict[str, Any]) -> str:
    """What follows an entry's name where entries are compared: '', ' (estimate)' or
    ' (partly estimated)' (`Store.list`'s `provenance`)."""
    provenance = entry.get("provenance", results.MEASURED)
    if provenance == results.MEASURED:
        return ""
    return " (estimate)" if provenance == results.ESTIMATED else " (partly estimated)"


def run_settings_text(spec: dict[str, Any]) -> str:
    """A run's model and key settings in a few words."""
    parts = [str(spec.get("model_id", "?"))]
    for name, word in (("batch_size", "batch"), ("prompt_tokens", "prompt"),
                       ("new_tokens", "output")):
        if name in spec:
            parts.append(f"{word} {spec[name]}")
    if "dtype" in spec:
        parts.append(_named(format_name, spec["dtype"]))
    if spec.get("stack", TRANSFORMERS) != TRANSFORMERS:
        parts.append(f"on {_named(stack_name, spec['stack'])}")
    defaults = RunSpec().to_dict()
    parts += [f"{name.replace('_', ' ')} {spec[name]}" for name in STACK_FIELDS
              if name in spec and spec[name] != defaults[name]]
    return ", ".join(parts)


def settings_differences(specs: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """Across several saved settings (RunSpec dicts): (the settings every one shares, the
    names of those that differ), in RunSpec's field order."""
    names = [name for name in RunSpec().to_dict() if any(name in s for s in specs)]
    same, differing = {}, []
    for name in names:
        values = [s.get(name) for s in specs]
        if all(v == values[0] for v in values):
            same[name] = values[0]
        else:
            differing.append(name)
    return same, differing


def spec_changes(earlier: RunSpec, now: RunSpec, ignore: set[str] = frozenset()) -> list[str]:
    """Each setting that changed since `earlier`, in words: 'Output length (tokens) 6, now 7'."""
    changes = []
    for name, before in earlier.to_dict().items():
        after = getattr(now, name)
        if name not in ignore and before != after:
            shown = [("none" if v is None else (v[:20] + "…" if isinstance(v, str) and len(v) > 20
                                                else v)) for v in (before, after)]
            changes.append(f"{field_info(name)['label']} {shown[0]}, now {shown[1]}")
    return changes


def sweep_changes(base: RunSpec, request: list[tuple[str, list | None]], now: RunSpec,
                  now_request: list[tuple[str, list]]) -> list[str]:
    """How the sweep shown (its base settings, factors and values) differs from the page now.
    `request`'s values may be None when unknown: only the factor is compared then."""
    def names(pairs):
        return " × ".join(FACTORS[name].label for name, _ in pairs) or "no factor with valid values"

    changes = []
    if [name for name, _ in request] != [name for name, _ in now_request]:
        changes.append(f"it varied {names(request)}, now {names(now_request)}")
    else:
        for (name, before), (_, after) in zip(request, now_request):
            if before is not None and list(before) != list(after):
                changes.append(f"values of {FACTORS[name].label} {_listed(before)}, now "
                               f"{_listed(after)}")
    varied = {FACTORS[name].field for name, _ in [*request, *now_request] if name in FACTORS}
    return changes + spec_changes(base, now, ignore=varied)
