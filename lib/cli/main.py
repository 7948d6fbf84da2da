"""Command line: `python -m lib run|sweep|load|estimate|hardware|machine|models|history|...`.

Needs only the engine's dependencies (torch, transformers, psutil), never Streamlit or plotly.
Every argument is checked before torch or transformers is imported and before anything is saved
(RunSpec, the model id, the context length, the cores, every point of a sweep, the prompt file,
the CSV path), so a bad one is refused within a second or two and a refused sweep leaves no
history entry; bad arguments and refused runs exit with status 2 and one line on stderr, no
traceback. The run flags are generated from RunSpec (`lib.core.spec.add_arguments`); the parser and
the types that refuse hostile values are in `lib.cli.arguments`.

`estimate` takes the run flags with `--hardware` (default `this`, this machine's measured
ceilings) and `--gpus`, and prints one prediction, never saved (`run --hardware ID` saves one
to the history, marked estimated); its `--dtype` also takes float8 (1-byte weights, bfloat16
activations), the number format DeepSeek-R1 is published in, which nothing here runs live; left
out, it is the model's published one (float8 for DeepSeek-R1), else float32 as for `run`. A
model that doesn't fit on the devices asked for is refused with how many it needs; with
`--json` it is printed all the same (status 0), with `fits: false` and `min_gpus`.
`hardware` lists the profiles with their figures and sources. `load` measures a server under
load (`lib.cli.load_test`).

What it prints is text from outside the app too (model ids, notes of imported entries, a
model's generated text), so every line goes through `_out` or `_say`, which pass it through
`lib.core.text.terminal`: nothing printed can move the cursor, clear the screen or retitle the
window. JSON output is strict: a number that is not finite (NaN, infinity) is written as null,
"no value", never as the `NaN` strict parsers reject. `entry()`, which `python -m lib` runs,
ends quietly when the reader of stdout goes away (`python -m lib history | head`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from lib.cli import arguments
from lib.core import spec as run_spec
from lib.core.errors import ExplorerError, InvalidSpecError, UnsupportedError
from lib.core.spec import RunSpec
from lib.measure.factors import FACTORS, check_grid, get_factor, grid, parse_values, point_spec
from lib.measure.sweep_points import SweepProgress
from lib.core.text import one_line, terminal

SWEEP_DEFAULTS = {"repetitions": 3, "min_duration_s": 0.5}    # per point: a sweep has many
DEFAULT_BUDGET_S = 120.0                   # lib.measure.budget.DEFAULT_BUDGET_S, without importing it
THIS_MACHINE = "this"                      # lib.estimate.hardware.THIS, without importing it here
ESTIMATE_DTYPES = run_spec.DTYPES + ("float8",)   # lib.estimate.estimator.ESTIMATE_DTYPES


def build_parser() -> argparse.ArgumentParser:
    parser = arguments.Parser(prog="python -m lib",
                              description="Inference Latency Explorer, headless.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=arguments.Parser)
    run = commands.add_parser("run", help="time one run and print its metrics")
    _add_spec_arguments(run)
    run.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    sweep = commands.add_parser("sweep", help="vary one factor (or two) and tabulate the metrics")
    _add_spec_arguments(sweep, SWEEP_DEFAULTS)
    sweep.add_argument("--factor", required=True, choices=list(FACTORS), help="what to vary")
    sweep.add_argument("--values", default=None, type=arguments.text,
                       help="comma-separated values (default: a sensible range per factor); "
                            "device also takes hardware profile ids (h200, tpu-v6e, ...), "
                            "estimated instead of measured")
    sweep.add_argument("--factor2", default=None, choices=list(FACTORS),
                       help="a second factor, for a grid")
    sweep.add_argument("--values2", default=None, type=arguments.text,
                       help="values of the second factor")
    sweep.add_argument("--csv", default=None, type=arguments.csv_path,
                       help="write the tidy table to this CSV file")
    sweep.add_argument("--budget-s", default=DEFAULT_BUDGET_S, type=arguments.budget_s,
                       help="end within about this many seconds, loading included: fewer "
                            "repetitions per point (at least 2) when this machine is too slow "
                            f"or busy for the settings (default {DEFAULT_BUDGET_S:g})")
    sweep.add_argument("--json", action="store_true",
                       help="print one JSON object (points, plan, elapsed_s) instead of a "
                            "table; progress goes to stderr")
    saved = commands.add_parser("history", help="list saved runs and sweeps")
    saved.add_argument("--model", default=None, type=arguments.text, help="only this model id")
    saved.add_argument("--device", default=None, type=arguments.text, help="only this device")
    saved.add_argument("--since", default=None, type=arguments.date,
                       help="only from this date on (YYYY-MM-DD)")
    saved.add_argument("--json", action="store_true", help="print JSON instead of a table")
    export = commands.add_parser("export", help="print one saved run or sweep, everything included")
    export.add_argument("entry_id", type=arguments.entry_id, help="the id that `history` shows")
    export.add_argument("--json", action="store_true", help="JSON (the default)")
    export.add_argument("--csv", action="store_true", help="the tidy table as CSV instead")
    imported = commands.add_parser("import", help="add an exported JSON file to the history")
    imported.add_argument("file", help="a file written by `export`")
    deleted = commands.add_parser("delete", help="remove a saved run or sweep for good")
    deleted.add_argument("entry_id", type=arguments.entry_id,
                         help="the id that `history` shows")
    shared = commands.add_parser(
        "share", help="classroom mode: show a saved run or sweep to every visitor (or stop)")
    shared.add_argument("entry_id", type=arguments.entry_id, help="the id that `history` shows")
    shared.add_argument("--off", action="store_true", help="stop sharing it")
    estimated = commands.add_parser(
        "estimate", help="predict a run on a hardware profile (this machine, H200, TPU, ...)")
    _add_spec_arguments(estimated, {"hardware": THIS_MACHINE, "dtype": None},
                        choices={"dtype": ESTIMATE_DTYPES})
    estimated.add_argument("--json", action="store_true",
                           help="print one JSON object instead of text")
    profiles = commands.add_parser("hardware", help="list the hardware profiles for estimates")
    profiles.add_argument("--json", action="store_true",
                          help="print a JSON list instead of a table")
    listing = commands.add_parser("models", help="list the model catalog with sizes and shapes")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    from lib.cli import load_test
    load_test.add_parser(commands)
    machine = commands.add_parser(
        "machine", help="this machine's ceilings: memory bandwidth, matmul FLOP/s per dtype, "
        "per-layer overhead (measured once, a few seconds, then kept)")
    machine.add_argument("--refresh", action="store_true",
                         help="measure again instead of using the kept figures")
    machine.add_argument("--json", action="store_true",
                         help="print one JSON object, keyed by device, instead of text")
    return parser


def _add_spec_arguments(parser: argparse.ArgumentParser, defaults: dict | None = None,
                        choices: dict | None = None) -> None:
    """RunSpec's flags, plus --prompt-file: the prompt from a file, instead of --prompt."""
    prompt = parser.add_mutually_exclusive_group()
    run_spec.add_arguments(parser, defaults, groups={"prompt_text": prompt}, choices=choices)
    prompt.add_argument(
        "--prompt-file", dest="prompt_text", type=arguments.prompt_file, default=argparse.SUPPRESS,
        metavar="PATH", help="read the prompt from this UTF-8 text file ('-': standard input), "
        f"at most {arguments.PROMPT_FILE_MAX_BYTES:,} bytes")


# --- running ----------------------------------------------------------------------------------

def entry() -> int | str | None:
    """What `python -m lib` runs: `main`, ending quietly when the reader of stdout goes away
    (`python -m lib history | head -1`). As Python's documentation advises (signal module, "Note
    on SIGPIPE"), stdout is pointed at /dev/null so the interpreter's last flush can't fail
    again, and the exit status is 1."""
    try:
        try:
            status = main()
        except SystemExit as exc:          # --help, or argparse refusing an argument
            status = exc.code
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "models":
            return _models(as_json=args.json)
        if args.command == "machine":
            return _machine(refresh=args.refresh, as_json=args.json)
        if args.command == "hardware":
            return _hardware(as_json=args.json)
        if args.command == "estimate":
            return _estimate(args)
        if args.command == "load":
            from lib.cli import load_test
            _quiet_transformers()
            return load_test.run(args, _out, _say, _print_json)
        if args.command in {"history", "export", "import", "delete", "share"}:
            return _history(args)
        spec = run_spec.from_arguments(args)
        if args.command == "sweep":
            return _run_sweep(spec, _sweep_request(spec, args), args.csv, args.budget_s,
                              args.json)
        _check_runnable(spec)
        return _run(spec, as_json=args.json)
    except ExplorerError as exc:
        hint = f" {exc.cli_hint}" if exc.cli_hint else ""     # a command: for the CLI only
        _say(f"error: {one_line(exc, arguments.ERROR_MAX_CHARS)}{hint}")
        return 2
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


def _check_runnable(spec: RunSpec) -> None:
    """The cores, the model and the context: every check that needs neither torch nor the
    model's weights (an estimate: its profile and device count; a live run: a model that is
    never run live)."""
    run_spec.check_threads(spec.threads)
    _check_point(spec)


def _check_point(spec: RunSpec) -> None:
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


def _out(text: str) -> None:
    """Everything printed on stdout goes through here: cleaned for a terminal."""
    print(terminal(text))


def _say(message: str) -> None:
    """Everything printed on stderr goes through here: cleaned for a terminal."""
    print(terminal(message), file=sys.stderr)


def _models(as_json: bool) -> int:
    from lib.measure import backends
    from lib.estimate.modelcard import format_count
    from lib.models.catalog import CATALOG
    from lib.models.shapes import shapes

    rows = []
    for model_id, entry in CATALOG.items():
        shape = shapes(model_id)
        row = {"id": model_id, "display_name": entry.display_name, "kind": entry.kind,
               "weights": entry.weights, "parameters": shape.parameters,
               "layers": shape.layers, "hidden_size": shape.hidden_size,
               "attention_heads": shape.attention_heads, "kv_heads": shape.kv_heads,
               "head_dim": shape.head_dim, "vocab_size": shape.vocab_size,
               "context_length": shape.context_length,
               "kv_cache_bytes_per_token_bfloat16": shape.kv_bytes_per_token("bfloat16"),
               "weight_bytes": {d: shape.weight_bytes(d) for d in run_spec.DTYPES},
               "stacks": list(backends.stacks_for(entry))}
        if shape.active_parameters != shape.parameters:
            row["active_parameters"] = shape.active_parameters
        if entry.estimate_only:
            row["estimate_only"] = True
        rows.append(row)
    if as_json:
        return _print_json(rows)
    _out(f"{'id':<32}{'params':>9}{'active':>9}{'layers':>7}{'hidden':>7}{'heads':>6}"
         f"{'kv':>4}{'vocab':>8}{'context':>9}  {'kind/weights':<18}stacks")
    for r in rows:
        active = format_count(r["active_parameters"]) if "active_parameters" in r else "-"
        _out(f"{r['id']:<32}{format_count(r['parameters']):>9}{active:>9}{r['layers']:>7}"
             f"{r['hidden_size']:>7}{r['attention_heads']:>6}{r['kv_heads']:>4}"
             f"{r['vocab_size']:>8}{r['context_length']:>9}  "
             f"{r['kind'] + '/' + r['weights']:<18}{', '.join(r['stacks'])}")
    return 0


def _hardware(as_json: bool) -> int:
    from lib.estimate import hardware
    from lib.core.metrics import format_bytes

    profiles = hardware.profiles()
    if as_json:
        return _print_json([profile.to_dict() for profile in profiles.values()])
    _out(f"{'id':<14}{'bandwidth':>12}{'bf16 FLOP/s':>13}{'memory':>10}{'link':>13}  name")
    for profile in profiles.values():
        link = profile.interconnect_bytes_per_s
        _out(f"{profile.id:<14}{format_bytes(profile.memory_bandwidth_bytes_per_s) + '/s':>12}"
             f"{profile.peak_flops('bfloat16') / 1e12:>9,.1f} T/s"
             f"{format_bytes(profile.memory_bytes):>10}"
             f"{format_bytes(link) + '/s' if link else '-':>13}  {profile.name}")
    _out("sources: python -m lib hardware --json")
    return 0


def _estimate(args: argparse.Namespace) -> int:
    """One estimate, printed, never saved: as text, refused (status 2) when the model doesn't
    fit on the devices asked for, with how many it needs; as JSON, printed with `fits` false
    and `min_gpus`, so a program can ask again with that many."""
    from lib.estimate import estimator
    from lib.models.catalog import get_entry

    requested = args.dtype
    args.dtype = run_spec.field_info("dtype")["default"]      # checked below, once known
    spec = run_spec.from_arguments(args)
    dtype = requested or get_entry(spec.model_id).published_dtype or spec.dtype
    spec_dtype, weights = estimator.split_dtype(dtype)
    spec = spec.replace(dtype=spec_dtype)
    result = estimator.estimate(spec, spec.hardware, spec.gpus, weights)
    if args.json:
        return _print_json(result.to_dict())
    _out(_estimate_text(result.enforce()))
    return 0


def _estimate_text(result) -> str:
    from lib.estimate import estimator
    from lib.core.metrics import METRICS

    spec = result.spec
    # A native stack has no compile setting: it is named instead.
    engine = f"compile {spec.compile}" if spec.stack == "transformers" else spec.stack
    lines = [f"ESTIMATE (not measured): {spec.model_id} on "
             f"{estimator.devices_words(result.hardware, result.gpus)}, "
             f"{result.weights_dtype}, batch {spec.batch_size}, prompt "
             f"{spec.prompt_tokens} tokens, output {spec.new_tokens} tokens, {engine}", ""]
    for name, value in result.summary.items():
        lines.append(f"{METRICS[name].label:<30}{METRICS[name].format(value):>14}")
    lines.append("")
    lines += [f"{phase}: limited by {term}" for phase, term in result.bound.items()]
    lines += ["", f"why: {result.why()['text']}", ""]
    lines += [f"memory: {result.memory_verdict}", "", "assumptions:"]
    lines += [f"- {sentence}" for sentence in result.assumptions]
    return "\n".join(lines)


def _machine(refresh: bool, as_json: bool) -> int:
    from lib.machine import ceilings

    def progress(what: str, fraction: float) -> None:
        _say(f"measuring: {what} ({fraction:.0%})")

    found = ceilings.available(refresh=refresh, on_progress=progress, on_wait=_say)
    if as_json:
        return _print_json({device: c.to_dict() for device, c in found.items()})
    for c in found.values():
        for line in ceilings.describe(c):
            _out(line)
    return 0


def _print_json(value) -> int:
    _out(json.dumps(_finite(value), indent=2, allow_nan=False))
    return 0


def _finite(value):
    """`value` with every non-finite number as None: JSON has no NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _run(spec: RunSpec, as_json: bool) -> int:
    from lib.records import export as report, saving

    _quiet_transformers()
    saved = saving.run_and_save(spec, on_status=_say, on_wait=_say, on_save_wait=_say)
    _say(f"saved as #{saved.entry_id} (python -m lib export {saved.entry_id})" if saved.entry_id
         else f"not saved: {saved.problem}")
    if as_json:
        return _print_json(report.to_dict(saved.measurement, saved.summary))
    _out(report.to_text(saved.measurement, saved.summary))
    return 0


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _sweep_request(base: RunSpec, args: argparse.Namespace) -> list:
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
            _check_point(spec)
        except (InvalidSpecError, UnsupportedError) as exc:
            unrunnable.append(exc)
    if len(unrunnable) == len(points):
        raise unrunnable[0]
    return factor_values


def _run_sweep(base: RunSpec, factor_values: list, csv_path: str | None,
               budget_s: float | None = None, as_json: bool = False) -> int:
    import time

    from lib.measure import sweep
    from lib.measure.cache import ModelCache
    from lib.records import export as report, saving, table
    from lib.views import insights

    started = time.monotonic()
    _quiet_transformers()
    plan = sweep.make_plan(base, factor_values, budget_s)
    _say(f"this sweep: {plan.promise()} (an estimate from {plan.basis})")
    if plan.cut_note():
        _say(plan.cut_note())
    cache = ModelCache(max_entries=1)
    last_round = [0]

    def progress(event: SweepProgress) -> None:
        eta = (f", about {event.eta_s:.0f} s left"
               + ("" if event.eta_measured else " (estimated before measuring)")
               if event.eta_s else "")
        if event.phase == "loading":
            _say(f"point {event.values}: checking and loading ({event.points_loaded} of "
                 f"{event.total_points} points loaded{eta})")
        elif event.phase == "measuring" and event.round != last_round[0]:
            last_round[0] = event.round
            what = "one repetition of each point being measured" if event.fraction < 1 else \
                "extra repetitions for points whose repetitions disagree"
            _say(f"round {event.round}: {what} ({event.repetitions_done} of "
                 f"{event.repetitions_planned} repetitions done{eta})")

    recorder = saving.SweepRecorder(base, [f.name for f, _ in factor_values],
                                    len(grid(factor_values)), on_wait=_say)
    # The budget counts from the start of the rounds: waiting for other people's runs is not
    # this sweep's.
    moments: dict[str, float] = {}

    def mark(moment: str) -> None:
        moments[moment] = time.monotonic()

    try:
        result = saving.sweep_and_save(base, factor_values, cache, plan, recorder,
                                       on_progress=progress, on_wait=_say,
                                       on_start=lambda: mark("start"), on_end=lambda: mark("end"))
    finally:
        cache.close()
    waited_s = moments["start"] - started
    elapsed_s = moments["end"] - moments["start"]
    for note in result.notes:
        _say(note)
    _say(f"saved as #{recorder.entry_id}" if recorder.problem is None
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
    findings = (insights.findings(rows, factors[0]) if len(factors) == 1
                else insights.heatmap_findings(rows, factors))
    if as_json:
        _say(f"took {elapsed_s:.0f} s (estimated {plan.estimated_s:.0f} s before measuring)")
        return _print_json({"factors": result.factors, "points": rows,
                            "plan": plan.to_dict(), "elapsed_s": round(elapsed_s, 1),
                            "waited_s": round(waited_s, 1),
                            "stopped": result.stopped, "notes": list(result.notes),
                            "findings": findings, "saved_id": recorder.entry_id})
    _out(report.sweep_text(rows, result.factors))
    for sentence in findings:
        _out(f"- {sentence}")
    _out(f"took {elapsed_s:.0f} s (estimated {plan.estimated_s:.0f} s before measuring)")
    if csv_path:
        _out(f"wrote {len(rows)} rows to {csv_path}")
    return 0


def _history(args: argparse.Namespace) -> int:
    from lib.records import documents, wording
    from lib.records.store import DamagedEntryError, Store, StoreError

    store = Store(on_wait=_say)
    if args.command == "history":
        entries = store.list(model_id=args.model, device=args.device, since=args.since)
        if args.json:
            return _print_json(entries)
        for e in entries:
            # An imported entry's every field is someone else's text: one line per entry.
            cell = {key: one_line(e[key] or "", 300) for key in
                    ("created_at", "device", "status", "imported_from", "note")}
            origin = f"  imported from {cell['imported_from']}" if e["imported_from"] else ""
            shared = "  shared" if e["shared"] else ""
            # An estimate's device is a hardware profile ('h100-sxm x 8'): say it was modelled.
            device = cell["device"] + ("" if e["provenance"] == "measured" else
                                       f" ({one_line(e['provenance'], 40)})")
            _out(f"#{e['id']:<5}{cell['created_at']}  {device:<6} {cell['status']:<9}"
                 f"{one_line(wording.entry_label(e), 300)}{shared}{origin}  {cell['note']}")
        return 0
    if args.command == "share":
        store.set_shared(args.entry_id, not args.off)
        _out(f"#{args.entry_id} is {'no longer ' if args.off else ''}shared with the class")
        return 0
    if args.command == "export":
        try:
            document = store.export(args.entry_id)
            opened = documents.open_entry(document, args.entry_id)   # the CSV, and a check
        except DamagedEntryError as exc:
            raise DamagedEntryError(f"#{args.entry_id}", f"{exc.reason.rstrip('.')}. `python -m "
                                    f"lib delete {args.entry_id}` removes it.") from None
        if not args.csv:
            return _print_json(document)
        sys.stdout.write(terminal(opened.csv))
        return 0
    if args.command == "delete":
        if not store.delete(args.entry_id):
            raise StoreError(f"No saved run or sweep with id {args.entry_id}: `python -m lib "
                             "history` lists them.")
        _out(f"deleted #{args.entry_id}")
        return 0
    from lib.records import imports

    _out(f"imported as #{store.import_document(imports.check_file(args.file).document)}")
    return 0
