"""Command line: `python -m lib run|sweep|models|history|export|import|delete|share ...`.

Needs only the engine's dependencies (torch, transformers, psutil), never Streamlit or plotly.
Every argument is checked before torch or transformers is imported (RunSpec, the model id, the
context length, the factor values), so a bad one is refused within a second or two; bad
arguments and refused runs exit with status 2 and one line on stderr, no traceback. The run
flags are generated from RunSpec (`lib.spec.add_arguments`).
"""

from __future__ import annotations

import argparse
import json
import sys

from lib import spec as run_spec
from lib.errors import ExplorerError
from lib.spec import RunSpec
from lib.sweep import FACTORS

SWEEP_DEFAULTS = {"repetitions": 3, "min_duration_s": 0.5}    # per point: a sweep has many


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:          # one line, exit 2, no usage dump
        self.exit(2, f"error: {message} (see `python -m lib {self.prog.split()[-1]} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lib", description="Inference Latency Explorer, headless.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="time one run and print its metrics")
    run_spec.add_arguments(run)
    run.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    sweep = commands.add_parser("sweep", help="vary one factor (or two) and tabulate the metrics")
    run_spec.add_arguments(sweep, SWEEP_DEFAULTS)
    sweep.add_argument("--factor", required=True, choices=list(FACTORS), help="what to vary")
    sweep.add_argument("--values", default=None,
                       help="comma-separated values (default: a sensible range per factor)")
    sweep.add_argument("--factor2", default=None, choices=list(FACTORS),
                       help="a second factor, for a grid")
    sweep.add_argument("--values2", default=None, help="values of the second factor")
    sweep.add_argument("--csv", default=None, help="write the tidy table to this CSV file")
    saved = commands.add_parser("history", help="list saved runs and sweeps")
    saved.add_argument("--model", default=None, help="only this model id")
    saved.add_argument("--device", default=None, help="only this device")
    saved.add_argument("--since", default=None, help="only from this date on (YYYY-MM-DD)")
    saved.add_argument("--json", action="store_true", help="print JSON instead of a table")
    export = commands.add_parser("export", help="print one saved run or sweep, everything included")
    export.add_argument("entry_id", type=int, help="the id that `history` shows")
    export.add_argument("--json", action="store_true", help="JSON (the default)")
    export.add_argument("--csv", action="store_true", help="the tidy table as CSV instead")
    imported = commands.add_parser("import", help="add an exported JSON file to the history")
    imported.add_argument("file", help="a file written by `export`")
    deleted = commands.add_parser("delete", help="remove a saved run or sweep for good")
    deleted.add_argument("entry_id", type=int, help="the id that `history` shows")
    shared = commands.add_parser(
        "share", help="classroom mode: show a saved run or sweep to every visitor (or stop)")
    shared.add_argument("entry_id", type=int, help="the id that `history` shows")
    shared.add_argument("--off", action="store_true", help="stop sharing it")
    listing = commands.add_parser("models", help="list the model catalog with sizes and shapes")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "models":
            return _models(as_json=args.json)
        if args.command in {"history", "export", "import", "delete", "share"}:
            return _history(args)
        spec = run_spec.from_arguments(args)
        if args.command == "sweep":
            return _sweep(spec, args)
        _check_model(spec)
        return _run(spec, as_json=args.json)
    except ExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _check_model(spec: RunSpec) -> None:
    """The model exists and the prompt fits its context: no torch needed for either."""
    from lib.models.catalog import get_entry
    get_entry(spec.model_id).check_context(spec.prompt_tokens, spec.new_tokens)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _models(as_json: bool) -> int:
    from lib.modelcard import format_count
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
               "weight_bytes": {d: shape.weight_bytes(d) for d in run_spec.DTYPES}}
        if shape.active_parameters != shape.parameters:
            row["active_parameters"] = shape.active_parameters
        rows.append(row)
    if as_json:
        return _print_json(rows)
    print(f"{'id':<32}{'params':>9}{'active':>9}{'layers':>7}{'hidden':>7}{'heads':>6}"
          f"{'kv':>4}{'vocab':>8}{'context':>9}  kind/weights")
    for r in rows:
        active = format_count(r["active_parameters"]) if "active_parameters" in r else "-"
        print(f"{r['id']:<32}{format_count(r['parameters']):>9}{active:>9}{r['layers']:>7}"
              f"{r['hidden_size']:>7}{r['attention_heads']:>6}{r['kv_heads']:>4}"
              f"{r['vocab_size']:>8}{r['context_length']:>9}  {r['kind']}/{r['weights']}")
    return 0


def _print_json(value) -> int:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _run(spec: RunSpec, as_json: bool) -> int:
    from lib import history, report, runner, stats

    _quiet_transformers()
    measurement = runner.run(spec, on_status=_say, on_wait=_say)
    summary = stats.summarize(measurement)
    entry_id, problem = history.save_run(measurement, summary, on_wait=_say)
    _say(f"saved as #{entry_id} (python -m lib export {entry_id})" if entry_id
         else f"not saved: {problem}")
    if as_json:
        return _print_json(report.to_dict(measurement, summary))
    print(report.to_text(measurement, summary))
    return 0


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _sweep(base: RunSpec, args: argparse.Namespace) -> int:
    from lib import sweep

    factor_values = []
    for name, text in ((args.factor, args.values), (args.factor2, args.values2)):
        if name is None:
            continue
        factor = sweep.get_factor(name)
        values = sweep.parse_values(factor, text) if text is not None \
            else list(factor.default_values())
        factor_values.append((factor, values))
    sweep.check_grid(factor_values)
    return _run_sweep(base, factor_values, args.csv)


def _run_sweep(base: RunSpec, factor_values: list, csv_path: str | None) -> int:
    from lib import history, insights, report, runner, sweep, table
    from lib.models.cache import ModelCache

    _quiet_transformers()
    cache = ModelCache(max_entries=1)
    last_round = [0]

    def progress(event: sweep.SweepProgress) -> None:
        eta = f", about {event.eta_s:.0f} s left" if event.eta_s else ""
        if event.phase == "loading":
            _say(f"point {event.values}: checking and loading{eta}")
        elif event.phase == "measuring" and event.round != last_round[0]:
            last_round[0] = event.round
            what = "one repetition of each point being measured" if event.fraction < 1 else \
                "extra repetitions for points whose repetitions disagree"
            _say(f"round {event.round}: {what} ({event.fraction:.0%} done{eta})")

    recorder = history.SweepRecorder(base, [f.name for f, _ in factor_values],
                                     len(sweep.grid(factor_values)), on_wait=_say)
    description = f"sweep of {', '.join(f.label for f, _ in factor_values)} " \
                  f"({len(sweep.grid(factor_values))} points)"
    try:
        with runner.SweepPoints(cache, description, on_wait=_say) as points:
            result = sweep.run_sweep(base, factor_values, points, on_progress=progress,
                                     on_point=recorder.add)
    finally:
        cache.close()
    recorder.finish(result.stopped)
    for note in result.notes:
        _say(note)
    _say(f"saved as #{recorder.entry_id}" if recorder.problem is None
         else f"not saved: {recorder.problem}")
    rows = table.rows(result)
    if csv_path:
        with open(csv_path, "w", newline="") as f:
            f.write(table.to_csv(rows))
    print(report.sweep_text(rows, result.factors))
    if len(result.factors) == 1:
        for sentence in insights.findings(rows, FACTORS[result.factors[0]]):
            print(f"- {sentence}")
    if csv_path:
        print(f"wrote {len(rows)} rows to {csv_path}")
    return 0


def _history(args: argparse.Namespace) -> int:
    from lib import history
    from lib.store import DamagedEntryError, Store, StoreError

    store = Store(on_wait=_say)
    if args.command == "history":
        entries = store.list(model_id=args.model, device=args.device, since=args.since)
        if args.json:
            return _print_json(entries)
        for e in entries:
            origin = f"  imported from {e['imported_from']}" if e["imported_from"] else ""
            shared = "  shared" if e["shared"] else ""
            print(f"#{e['id']:<5}{e['created_at']}  {e['device']:<6}{e['status']:<9}"
                  f"{history.entry_label(e)}{shared}{origin}  {e['note']}")
        return 0
    if args.command == "share":
        store.set_shared(args.entry_id, not args.off)
        print(f"#{args.entry_id} is {'no longer ' if args.off else ''}shared with the class")
        return 0
    if args.command == "export":
        try:
            document = store.export(args.entry_id)
            opened = history.open_entry(document, args.entry_id)   # the CSV, and a check
        except DamagedEntryError as exc:
            raise DamagedEntryError(f"#{args.entry_id}", f"{exc.reason.rstrip('.')}. `python -m "
                                    f"lib delete {args.entry_id}` removes it.") from None
        if not args.csv:
            return _print_json(document)
        sys.stdout.write(opened.csv)
        return 0
    if args.command == "delete":
        if not store.delete(args.entry_id):
            raise StoreError(f"No saved run or sweep with id {args.entry_id}: `python -m lib "
                             "history` lists them.")
        print(f"deleted #{args.entry_id}")
        return 0
    from lib import imports

    print(f"imported as #{store.import_document(imports.check_file(args.file).document)}")
    return 0
