"""Runs and sweeps <-> the JSON documents the store keeps and exports.

Saving belongs here, not in the pages or the CLI: `save_run` and `SweepRecorder` save as results
arrive (to the default store unless given one) and turn a store failure into a `problem`
message instead of an error: a measurement is never lost because the history could not be
written. A run's document is `lib.report.to_dict`'s (the raw `lib.results` document plus its
summary); `measurement_from_document` and `sweep_from_document` rebuild results from raw
timestamps, so every statistic and chart of a saved result is derived as on the day it was
measured.
"""

from __future__ import annotations

from typing import Any

from lib import report, results, stats
from lib.results import Measurement
from lib.spec import RunSpec
from lib.store import Store, StoreError
from lib.sweep import PointResult, SweepResult


def run_document(measurement: Measurement, summary: stats.Summary) -> dict[str, Any]:
    return report.to_dict(measurement, summary)


def measurement_from_document(document: dict[str, Any]) -> Measurement:
    return results.from_dict(document)


def sweep_document(base: RunSpec, factors: list[str], planned: int) -> dict[str, Any]:
    return {"base": base.to_dict(), "factors": factors, "planned": planned}


def point_document(point: PointResult) -> dict[str, Any]:
    return {"values": point.values, "skipped_reason": point.skipped_reason,
            "seconds": point.seconds,
            "spec": point.spec.to_dict() if point.spec else None,
            "measurement": run_document(point.measurement, point.summary)
            if point.measured else None}


def sweep_from_document(document: dict[str, Any]) -> SweepResult:
    points = []
    for doc in document.get("points") or []:
        point = PointResult(values=doc["values"], skipped_reason=doc.get("skipped_reason"),
                            seconds=doc.get("seconds", 0.0))
        if doc.get("measurement"):
            point.measurement = measurement_from_document(doc["measurement"])
            point.spec = point.measurement.spec
            point.summary = stats.summarize(point.measurement)
        points.append(point)
    return SweepResult(RunSpec(**document["base"]), list(document["factors"]), points=points,
                       stopped=document.get("status") == "partial",
                       planned=document.get("planned", len(points)))


def save_run(measurement: Measurement, summary: stats.Summary,
             store: Store | None = None) -> tuple[int | None, str | None]:
    """(entry id, None) when saved; (None, why not) when the history can't be written."""
    try:
        return (store or Store()).save_run(run_document(measurement, summary)), None
    except StoreError as exc:
        return None, str(exc)


class SweepRecorder:
    """Saves a sweep point by point; after a store failure it stops trying and says why."""

    def __init__(self, base: RunSpec, factors: list[str], planned: int,
                 store: Store | None = None) -> None:
        self.store, self.entry_id, self.problem = store or Store(), None, None
        try:
            self.entry_id = self.store.start_sweep(sweep_document(base, factors, planned))
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
