"""What a saved entry is, in words: History's list, the CLI's `history`, and what changed.

`entry_label` names an entry from what it measured (the factor varied, its values and the
models a sweep really ran); `estimate_words` and `provenance_mark` say that its numbers are
estimates, not measurements; `run_settings_text`, `settings_differences`, `spec_changes` and
`sweep_changes` say how saved settings differ from each other or from the sidebar's. A damaged
entry's values are shown as they were saved, never a traceback.
"""

from __future__ import annotations

from typing import Any, Callable

from lib.core import results
from lib.core.spec import RunSpec, field_info
from lib.core.stacks import STACK_SETTINGS, TRANSFORMERS, format_name, stack_name
from lib.measure.factors import FACTORS, current_name
from lib.records.documents import Opened

# A run's label names these settings; a stack setting is named only when it isn't the default.


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
        return ("simulated load sweep: " if entry.get("provenance") == "simulated" else
                "load sweep: ") + load_words(entry.get("plan") or {}) + f" — {entry['model_id']}"
    factors = [current_name(name) for name in entry.get("factors") or []
               if isinstance(name, str) and current_name(name) in FACTORS]
    if not factors:
        return f"sweep — {_listed(entry['models'])}"
    title = " × ".join(FACTORS[name].label for name in factors)
    values = []
    for name in factors:
        if name == "model":
            values.append(_listed(entry["models"]) or "no model measured yet")
        else:
            saved = [{current_name(key): value for key, value in v.items()}
                     for v in entry["point_values"]]
            chosen = _distinct([v.get(name) for v in saved if name in v])
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
    parts += [f"{name.replace('_', ' ')} {spec[name]}" for name in STACK_SETTINGS
              if name in spec and spec[name] != defaults[name]]
    # The techniques (pruning, early exit, speculative decoding, the quote prompt) and quality.
    for name, word in (("prune", "pruned"), ("exit_layer", "exit after layer"),
                       ("speculative", "speculative"), ("prompt_kind", "prompt"),
                       ("quality", "quality")):
        if spec.get(name) is not None and spec.get(name) != defaults[name]:
            parts.append(f"{word} {spec[name]}")
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
