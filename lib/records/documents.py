"""Runs and sweeps <-> the JSON documents the store keeps and exports.

A run's document is `lib.records.export.to_dict`'s (the raw `lib.core.results` document plus its
summary); `measurement_from_document` and `sweep_from_document` rebuild results from raw
timestamps, so every statistic and chart of a saved result is derived as on the day it was
measured. Both check every field they read (`lib.core.schema`) and name the one that is wrong.

Opening a saved entry is `open_entry`: everything History shows and exports for it (summary,
metric cards, the sweep's tidy table, the CSV), built at once, or `DamagedEntryError` saying why
not. An entry edited by hand or written by another version never reaches a page as a traceback,
and an import is opened the same way before it is stored (`lib.records.imports`). Saving them
as results arrive is `lib.records.saving`; what an entry is, in words, `lib.records.wording`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lib.core import results, schema, stats, text
from lib.core.results import Measurement
from lib.core.spec import RunSpec
from lib.measure.factors import FACTORS, current_name
from lib.measure.sweep_points import PointResult, SweepResult
from lib.records import export, table
from lib.records.store import DamagedEntryError


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
    factors = [schema.choice(current_name(name) if isinstance(name, str) else name,
                             schema.at(where, index), FACTORS)
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
    saved = {current_name(name): value for name, value in saved.items()}   # renamed factors
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
