"""The commands that measure: `run` (one run) and `sweep` (one factor or two), each saved.

Every argument is checked before torch or transformers is imported and before anything is
saved (the model id, the context length, the cores, every point of a sweep), so a refused sweep
leaves no history entry. Both go through `lib.records.saving`, the run-and-save path the web app
uses too; what they print is `lib.records.export`'s text or JSON.
"""

from __future__ import annotations

import argparse

from lib.cli import arguments
from lib.cli.output import out, print_json, quiet_transformers, say, waiting
from lib.core import spec as run_spec
from lib.core.errors import ExplorerError, InvalidSpecError, UnsupportedError
from lib.core.spec import RunSpec
from lib.measure.factors import FACTORS, check_grid, get_factor, grid, parse_values, point_spec
from lib.measure.sweep_points import SweepProgress


def check_runnable(spec: RunSpec) -> None:
    """The cores, the model and the context: every check that needs neither torch nor the
    model's weights (an estimate: its profile and device count; a live run: a model that is
    never run live)."""
    run_spec.check_threads(spec.threads)
    check_point(spec)


def check_point(spec: RunSpec) -> None:
    """What refuses one run or sweep point, cheaply (InvalidSpecError, UnsupportedError)."""
    from lib.models.catalog import get_entry

    entry = get_entry(spec.model_id)
    entry.check_context(spec.prompt_tokens, spec.new_tokens)
    if spec.hardware is None:
        from lib.core.stacks import check_format, get_stack
        entry.check_live()
        get_stack(spec.stack).require()
        check_format(spec.stack, spec.dtype)
    else:
        from lib.estimate import estimator
        estimator.check(spec, spec.hardware, spec.gpus)


def run(spec: RunSpec, as_json: bool) -> int:
    from lib.records import export as report, saving

    quiet_transformers()
    saved = saving.run_and_save(spec, on_status=say, on_wait=waiting(),
                                 on_save_wait=waiting())
    say(f"saved as #{saved.entry_id} (python -m lib export {saved.entry_id})" if saved.entry_id
        else f"not saved: {saved.problem}")
    if as_json:
        return print_json(report.to_dict(saved.measurement, saved.summary))
    out(report.to_text(saved.measurement, saved.summary))
    return 0


def sweep_request(base: RunSpec, args: argparse.Namespace) -> list:
    """The factors and their values, every point of the grid checked as a run would be, so a
    sweep that can't run is refused before its history entry exists. A point only its model
    can't take (a prompt longer than its context) is skipped by the sweep, as in the app;
    a grid of nothing but such points is refused."""
    if args.values2 is not None and args.factor2 is None:
        raise InvalidSpecError("--values2 needs --factor2: name the factor those values are of.")
    factor_values = []
    for name, text in ((args.factor, args.values), (args.factor2, args.values2)):
        if name is None:
            continue
        factor = get_factor(name)
        values = parse_values(factor, text) if text is not None \
            else list(factor.default_values())
        factor_values.append((factor, values))
    check_grid(factor_values)
    points, unrunnable = grid(factor_values), []
    for values in points:
        spec = point_spec(base, factor_values, values)
        run_spec.check_threads(spec.threads)
        try:
            check_point(spec)
        except (InvalidSpecError, UnsupportedError) as exc:
            unrunnable.append(exc)
    if len(unrunnable) == len(points):
        raise unrunnable[0]
    return factor_values


def run_sweep(base: RunSpec, factor_values: list, csv_path: str | None,
               budget_s: float | None = None, as_json: bool = False) -> int:
    import time

    from lib.measure import sweep
    from lib.measure.cache import ModelCache
    from lib.records import export as report, saving, table
    from lib.views import insights
    from lib.views.quality_insights import quality_findings

    started = time.monotonic()
    quiet_transformers()
    plan = sweep.make_plan(base, factor_values, budget_s)
    say(f"this sweep: {plan.promise()} (an estimate from {plan.basis})")
    if plan.cut_note():
        say(plan.cut_note())
    cache = ModelCache(max_entries=1)
    last_round = [0]

    def progress(event: SweepProgress) -> None:
        eta = (f", about {event.eta_s:.0f} s left"
               + ("" if event.eta_measured else " (estimated before measuring)")
               if event.eta_s else "")
        if event.phase == "loading":
            say(f"point {event.values}: checking and loading ({event.points_loaded} of "
                f"{event.total_points} points loaded{eta})")
        elif event.phase == "measuring" and event.round != last_round[0]:
            last_round[0] = event.round
            what = "one repetition of each point being measured" if event.fraction < 1 else \
                "extra repetitions for points whose repetitions disagree"
            say(f"round {event.round}: {what} ({event.repetitions_done} of "
                f"{event.repetitions_planned} repetitions done{eta})")

    recorder = saving.SweepRecorder(base, [f.name for f, _ in factor_values],
                                    len(grid(factor_values)), on_wait=waiting())
    # The budget counts from the start of the rounds: waiting for other people's runs is not
    # this sweep's.
    moments: dict[str, float] = {}

    def mark(moment: str) -> None:
        moments[moment] = time.monotonic()

    try:
        result = saving.sweep_and_save(base, factor_values, cache, plan, recorder,
                                       on_progress=progress, on_wait=waiting(),
                                       on_start=lambda: mark("start"), on_end=lambda: mark("end"))
    finally:
        cache.close()
    waited_s = moments["start"] - started
    elapsed_s = moments["end"] - moments["start"]
    for note in result.notes:
        say(note)
    say(f"saved as #{recorder.entry_id}" if recorder.problem is None
        else f"not saved: {recorder.problem}")
    rows = table.rows(result)
    if csv_path:
        try:
            with open(csv_path, "w", newline="") as f:
                f.write(table.to_csv(rows))
        except OSError as exc:
            raise ExplorerError(f"Could not write {csv_path} ({arguments.reason(exc)}); the "
                                "sweep itself is in the history (python -m lib history).") \
                from None
    factors = [FACTORS[name] for name in result.factors]
    findings = (insights.findings(rows, factors[0]) + quality_findings(rows, factors[0])
                if len(factors) == 1 else insights.heatmap_findings(rows, factors))
    if as_json:
        say(f"took {elapsed_s:.0f} s (estimated {plan.estimated_s:.0f} s before measuring)")
        return print_json({"factors": result.factors, "points": rows,
                            "plan": plan.to_dict(), "elapsed_s": round(elapsed_s, 1),
                            "waited_s": round(waited_s, 1),
                            "stopped": result.stopped, "notes": list(result.notes),
                            "findings": findings, "saved_id": recorder.entry_id})
    out(report.sweep_text(rows, result.factors))
    for sentence in findings:
        out(f"- {sentence}")
    out(f"took {elapsed_s:.0f} s (estimated {plan.estimated_s:.0f} s before measuring)")
    if csv_path:
        out(f"wrote {len(rows)} rows to {csv_path}")
    return 0


def distill(args) -> int:
    """`python -m lib distill`: train a student in the measurement slot, then say how to run it."""
    from lib.machine.runlock import measurement_slot
    from lib.measure import distill as distilling
    from lib.core.spec import check_threads, default_threads

    quiet_transformers()
    threads = default_threads()
    check_threads(threads)
    with measurement_slot(f"distilling {args.model}", on_wait=waiting(),
                          estimate_s=args.minutes * 60 + 30):
        provenance = distilling.distill(args.model, args.layers, args.steps,
                                        args.minutes * 60, threads, say)
    if args.json:
        return print_json(provenance)
    out(f"Distilled {provenance['teacher']} into {provenance['layers']} layers in "
        f"{provenance['seconds']:.0f} s ({provenance['steps']} steps on {provenance['data']}; "
        f"loss {provenance['loss_first']:.3f} -> {provenance['loss_last']:.3f}).")
    out(f"Saved in {provenance['folder']}, listed as the model {provenance['model_id']}. "
        "Compare it with the same-size pruned model, and use it as a draft:\n"
        f"  python -m lib run --model {provenance['model_id']} --quality\n"
        f"  python -m lib run --model {provenance['teacher']} --prune "
        f"layers:{len_layers_removed(provenance)} --quality\n"
        f"  python -m lib run --model {provenance['teacher']} --speculative draft")
    return 0


def len_layers_removed(provenance: dict) -> int:
    from lib.models.shapes import shapes
    return shapes(provenance["teacher"]).layers - provenance["layers"]
