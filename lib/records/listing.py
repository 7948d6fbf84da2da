"""History's list: each stored entry turned into what the list and its labels show.

`Store.list` reads the entries' columns and a few fields of their documents; `entries` turns
those rows into dictionaries: the models an entry really ran (`models_run`: a model sweep's
come from its points), where its numbers come from (`device_label`: a device of this machine,
or an estimate's hardware profile and device count), and whether they were measured or
estimated (`provenance`). An entry edited by hand may hold anything in those fields: a value
of the wrong kind is read as missing (`decoded`), never an error that stops the list.
"""

from __future__ import annotations

import json
from typing import Any

from lib.core.results import ESTIMATED, MEASURED

SIMULATED = "simulated"              # a load run's target kind when nothing ran
from lib.core.spec import DEVICES

# The columns `Store.list` selects first, in order; then factors, spec (or a load run's plan),
# a run's provenance, the base's hardware, stack and device count.
KEYS = ("id", "kind", "created_at", "model_id", "device", "status", "note",
        "imported_from", "points", "owner", "shared")


def entries(rows: list[tuple], points: list[tuple], model_id: str | None = None,
            device: str | None = None) -> list[dict[str, Any]]:
    """The listed entries (see `Store.list`), those of `model_id` and `device` only when given.
    `points`: each saved sweep point's (entry id, values, measured model, provenance)."""
    per_entry: dict[int, list[tuple[dict, str | None]]] = {}
    point_kinds: dict[int, list[Any]] = {}
    for entry_id, values, measured_model, kind in points:
        per_entry.setdefault(entry_id, []).append((
            decoded(values, dict, {}),
            measured_model if isinstance(measured_model, str) else None))
        if isinstance(measured_model, str):         # a measured (not skipped) point
            point_kinds.setdefault(entry_id, []).append(kind)
    listed = []
    for row in rows:
        entry = dict(zip(KEYS, row[:11]))
        entry["shared"] = bool(entry["shared"])
        entry["factors"] = [name for name in decoded(row[11], list, [])
                            if isinstance(name, str)]
        entry["spec"] = decoded(row[12], dict, None)
        if entry["kind"] == "load":      # the column holds a load run's plan, not a spec
            entry["plan"], entry["spec"] = entry["spec"], None
        saved_points = per_entry.get(entry["id"], [])
        entry["point_values"] = [values for values, _ in saved_points]
        entry["skipped"] = sum(1 for _, model in saved_points if model is None)
        entry["models"] = models_run(entry, saved_points)
        entry["provenance"] = provenance(entry["kind"], row[13], row[14],
                                         point_kinds.get(entry["id"], []))
        # A sweep's software stack (older ones have none: transformers, as they ran).
        entry["stack"] = row[15] if isinstance(row[15], str) else None
        entry["device"] = device_label(entry, row[14], row[16])
        if (model_id is None or model_id in entry["models"]) and \
                (not device or entry["device"] == device):
            listed.append(entry)
    return listed


def models_run(entry: dict[str, Any], points: list[tuple[dict, str | None]]) -> list[str]:
    """The models an entry really measured, in order of first appearance."""
    if entry["kind"] in ("run", "load"):
        return [entry["model_id"]]
    models = [model for _, model in points if model]
    if not models and "model" in entry["factors"]:
        models = [values["model"] for values, _ in points
                  if isinstance(values.get("model"), str) and values["model"]]
    if not models and "model" not in entry["factors"]:
        models = [entry["model_id"]]
    return list(dict.fromkeys(models))


def device_label(entry: dict[str, Any], base_hardware: Any, base_gpus: Any) -> str:
    """Where an entry's numbers come from: the device it ran on ('cpu'), or for an estimate
    the hardware profile and its device count ('h100-sxm x 8'), since no device of this
    machine ran it; a device sweep names each of its points' ('cpu, h200 x 1')."""
    def profile(hardware: Any, gpus: Any) -> str:
        return f"{hardware} x {gpus if isinstance(gpus, int) else 1}"
    if entry["kind"] == "run":
        spec = entry.get("spec") or {}
        if isinstance(spec.get("hardware"), str):
            return profile(spec["hardware"], spec.get("gpus"))
    elif entry["kind"] == "load":
        if entry.get("provenance") == SIMULATED and isinstance(base_hardware, str):
            return profile(base_hardware, base_gpus)
    elif entry["kind"] == "sweep":
        devices = [v["device"] for v in entry["point_values"] if isinstance(v.get("device"), str)]
        if devices:
            return ", ".join(dict.fromkeys(
                value if value in DEVICES else profile(value, base_gpus) for value in devices))
        if isinstance(base_hardware, str):
            return profile(base_hardware, base_gpus)
    return entry["device"]


def provenance(kind: str, run_kind: Any, base_hardware: Any, point_kinds: list[Any]) -> str:
    """"measured", "estimated", "measured and estimated", or for a load "simulated": what an
    entry's numbers are. A
    document that doesn't say was measured (written before estimates existed); a sweep with no
    point yet is what its settings ask for (a hardware profile: estimated)."""
    if kind == "load":                   # a server under load, or its simulation
        return SIMULATED if run_kind == SIMULATED else MEASURED
    if kind == "run":
        kinds = {run_kind}
    elif point_kinds:
        kinds = set(point_kinds)
    else:
        kinds = {ESTIMATED if isinstance(base_hardware, str) else MEASURED}
    estimated, measured = ESTIMATED in kinds, bool(kinds - {ESTIMATED})
    if estimated and measured:
        return f"{MEASURED} and {ESTIMATED}"
    return ESTIMATED if estimated else MEASURED


def decoded(fragment: Any, kind: type, default: Any) -> Any:
    """A JSON value `json_extract` returned, if it is a `kind` (an array or object comes back as
    JSON text): an entry edited by hand may hold anything there, and must not stop the list."""
    if not isinstance(fragment, str):
        return default
    try:
        value = json.loads(fragment)
    except ValueError:
        return default
    return value if isinstance(value, kind) else default
