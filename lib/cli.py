"""Command line: `python -m lib run ...` times one run and prints a table or JSON.

Needs only the engine's dependencies (torch, transformers, psutil), never Streamlit or plotly.
Bad arguments and refused runs exit with status 2 and one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from lib.errors import ExplorerError
from lib.spec import (ATTENTIONS, COMPILES, DEFAULT_MODEL_ID, DEVICES, DTYPES, KV_CACHES, RunSpec,
                      default_threads, field_info)
from lib.sweep import FACTORS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:          # one line, exit 2, no usage dump
        self.exit(2, f"error: {message} (see `python -m lib {self.prog.split()[-1]} --help`)\n")


def _help(name: str) -> str:
    info = field_info(name)
    bounds = ""
    if info["min"] is not None:
        bounds = f" [{info['min']}..{info['max']}]" if info["max"] is not None else f" [>= {info['min']}]"
    return info["help"] + bounds


def _add_spec_arguments(parser: argparse.ArgumentParser, repetitions: int,
                        min_duration: float) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL_ID, help=_help("model_id"))
    parser.add_argument("--device", default="cpu", choices=DEVICES, help=_help("device"))
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help=_help("dtype"))
    parser.add_argument("--batch", type=int, default=1, help=_help("batch_size"))
    parser.add_argument("--prompt-tokens", type=int, default=64, help=_help("prompt_tokens"))
    parser.add_argument("--new-tokens", type=int, default=32, help=_help("new_tokens"))
    parser.add_argument("--repetitions", type=int, default=repetitions, help=_help("repetitions"))
    parser.add_argument("--min-duration", type=float, default=min_duration,
                        help=_help("min_duration_s"))
    parser.add_argument("--warmup", type=int, default=1, help=_help("warmup_runs"))
    parser.add_argument("--threads", type=int, default=default_threads(), help=_help("threads"))
    parser.add_argument("--prompt", default=None, help=_help("prompt_text"))
    parser.add_argument("--attention", default="sdpa", choices=ATTENTIONS, help=_help("attention"))
    parser.add_argument("--kv-cache", default="dynamic", choices=KV_CACHES, help=_help("kv_cache"))
    parser.add_argument("--compile", default="off", choices=COMPILES, help=_help("compile"))


def _spec_from(args: argparse.Namespace) -> RunSpec:
    return RunSpec(
        model_id=args.model, device=args.device, dtype=args.dtype, batch_size=args.batch,
        prompt_tokens=args.prompt_tokens, new_tokens=args.new_tokens,
        repetitions=args.repetitions, min_duration_s=args.min_duration,
        warmup_runs=args.warmup, threads=args.threads, prompt_text=args.prompt,
        attention=args.attention, kv_cache=args.kv_cache, compile=args.compile)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lib", description="Inference Latency Explorer, headless.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="time one run and print its metrics")
    _add_spec_arguments(run, repetitions=5, min_duration=1.0)
    run.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    sweep = commands.add_parser("sweep", help="vary one factor (or two) and tabulate the metrics")
    _add_spec_arguments(sweep, repetitions=3, min_duration=0.5)
    sweep.add_argument("--factor", required=True, help="what to vary: " + ", ".join(FACTORS))
    sweep.add_argument("--values", default=None,
                       help="comma-separated values (default: a sensible range per factor)")
    sweep.add_argument("--factor2", default=None, help="a second factor, for a grid")
    sweep.add_argument("--values2", default=None, help="values of the second factor")
    sweep.add_argument("--csv", default=None, help="write the tidy table to this CSV file")
    saved = commands.add_parser("history", help="list saved runs and sweeps")
    saved.add_argument("--model", default=None, help="only this model id")
    saved.add_argument("--device", default=None, help="only this device")
    saved.add_argument("--since", default=None, help="only from this date on (YYYY-MM-DD)")
    saved.add_argument("--json", action="store_true", help="print JSON instead of a table")
    export = commands.add_parser("export", help="print one saved run or sweep, everything included")
    export.add_argument("entry_id", type=int, help="the id that `history` shows")
    export.add_argument("--json", action="store_true", help="JSON (the default and only format)")
    export.add_argument("--csv", action="store_true", help="the tidy table as CSV instead")
    imported = commands.add_parser("import", help="add an exported JSON file to the history")
    imported.add_argument("file", help="a file written by `export`")
    listing = commands.add_parser("models", help="list the model catalog with sizes and shapes")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "models":
        return _models(as_json=args.json)
    try:
        if args.command in {"history", "export", "import"}:
            return _history(args)
        spec = _spec_from(args)
        if args.command == "sweep":
            return _sweep(spec, args)
        return _run(spec, as_json=args.json)
    except ExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _models(as_json: bool) -> int:
    from lib import catalog, models
    from lib.modelcard import format_count

    rows = []
    for model_id, entry in catalog.CATALOG.items():
        shapes = models.shapes(model_id)
        row = {"id": model_id, "display_name": entry.display_name, "kind": entry.kind,
               "weights": entry.weights, "parameters": shapes.parameters,
               "layers": shapes.layers, "hidden_size": shapes.hidden_size,
               "attention_heads": shapes.attention_heads, "kv_heads": shapes.kv_heads,
               "head_dim": shapes.head_dim, "vocab_size": shapes.vocab_size,
               "context_length": shapes.context_length,
               "kv_cache_bytes_per_token_bfloat16": shapes.kv_bytes_per_token("bfloat16"),
               "weight_bytes": {d: shapes.weight_bytes(d) for d in
                                ("float32", "bfloat16", "float16", "int8")}}
        if shapes.active_parameters != shapes.parameters:
            row["active_parameters"] = shapes.active_parameters
        rows.append(row)
    if as_json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"{'id':<32}{'params':>9}{'active':>9}{'layers':>7}{'hidden':>7}{'heads':>6}"
          f"{'kv':>4}{'vocab':>8}{'context':>9}  kind/weights")
    for r in rows:
        active = format_count(r["active_parameters"]) if "active_parameters" in r else "-"
        print(f"{r['id']:<32}{format_count(r['parameters']):>9}{active:>9}{r['layers']:>7}"
              f"{r['hidden_size']:>7}{r['attention_heads']:>6}{r['kv_heads']:>4}"
              f"{r['vocab_size']:>8}{r['context_length']:>9}  {r['kind']}/{r['weights']}")
    return 0


def _run(spec: RunSpec, as_json: bool) -> int:
    from lib import history, report, runner, stats
    from lib.store import Store

    _quiet_transformers()

    def status(message: str) -> None:
        print(message, file=sys.stderr)

    measurement = runner.run(spec, on_status=status, on_wait=status)
    summary = stats.summarize(measurement)
    entry_id, problem = history.save_run(Store(), measurement, summary)
    status(f"saved as #{entry_id} (python -m lib export {entry_id})" if entry_id
           else f"not saved: {problem}")
    if as_json:
        json.dump(report.to_dict(measurement, summary), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(report.to_text(measurement, summary))
    return 0


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _sweep(base: RunSpec, args: argparse.Namespace) -> int:
    from lib import history, insights, models, runner, sweep
    from lib.store import Store

    _quiet_transformers()
    factor_values = []
    for name, text in ((args.factor, args.values), (args.factor2, args.values2)):
        if name is None:
            continue
        factor = sweep.get_factor(name)
        values = sweep.parse_values(factor, text) if text else list(factor.default_values())
        factor_values.append((factor, values))
    cache = models.ModelCache(max_entries=1)

    def run_point(spec: RunSpec):
        return runner.run(spec, get_model=cache.get,
                          on_wait=lambda message: print(message, file=sys.stderr))

    def progress(done: int, total: int, values: dict, eta_s: float | None) -> None:
        if done < total:
            eta = f", about {eta_s:.0f} s left" if eta_s is not None else ""
            print(f"point {done + 1}/{total}: {values}{eta}", file=sys.stderr)

    recorder = history.SweepRecorder(Store(), base, [f.name for f, _ in factor_values],
                                     len(sweep.grid(factor_values)))
    result = sweep.run_sweep(base, factor_values, run_point, on_progress=progress,
                             on_point=recorder.add)
    recorder.finish(result.stopped)
    print(f"saved as #{recorder.entry_id}" if recorder.problem is None
          else f"not saved: {recorder.problem}", file=sys.stderr)
    table = sweep.rows(result)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            f.write(sweep.to_csv(table))
    names = [f"factor_{name}" for name in result.factors]
    widths = {n: max([len(n) - 7, 8] + [len(str(row[n])) for row in table]) for n in names}
    print(" ".join(f"{n[7:]:>{widths[n]}}" for n in names) + f"{'TTFT':>11}{'TPOT':>11}"
          f"{'e2e':>11}{'decode/s':>10}{'req/s':>8}{'n':>4}  status")
    for row in table:
        cells = " ".join(f"{str(row[n]):>{widths[n]}}" for n in names)
        if row["status"] == "measured":
            print(cells + "".join(f"{report_ms(row[m]):>11}" for m in ("ttft_s", "tpot_s", "e2e_s"))
                  + f"{row['decode_tokens_per_s'] or 0:>10.1f}{row['requests_per_s']:>8.2f}"
                  f"{row['e2e_s_n']:>4}  measured")
        else:
            print(cells + f"  skipped: {row['skipped_reason']}")
    if len(result.factors) == 1:
        factor = FACTORS[result.factors[0]]
        for sentence in insights.findings(table, factor.name, factor.label,
                                          numeric=factor.parse is int):
            print(f"- {sentence}")
    if args.csv:
        print(f"wrote {len(table)} rows to {args.csv}")
    return 0


def report_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _history(args: argparse.Namespace) -> int:
    from lib import history, stats, sweep
    from lib.store import Store, StoreError

    store = Store()
    if args.command == "history":
        entries = store.list(model_id=args.model, device=args.device, since=args.since)
        if args.json:
            json.dump(entries, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return 0
        for e in entries:
            origin = f"  imported from {e['imported_from']}" if e["imported_from"] else ""
            points = f" {e['points']} points" if e["kind"] == "sweep" else ""
            print(f"#{e['id']:<5}{e['created_at']}  {e['kind']:<6}{e['model_id']:<32}"
                  f"{e['device']:<6}{e['status']}{points}{origin}  {e['note']}")
        return 0
    if args.command == "export":
        document = store.export(args.entry_id)
        if args.csv:
            if document["kind"] == "sweep":
                sys.stdout.write(sweep.to_csv(sweep.rows(history.sweep_from_document(document))))
            else:
                measurement = history.measurement_from_document(document)
                summary = stats.summarize(measurement)
                sys.stdout.write(sweep.to_csv([{**measurement.spec.to_dict(), **{
                    f"{name}_{key}": value for name, dist in summary.metrics.items()
                    for key, value in dist.to_dict().items()}}]))
            return 0
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    try:
        with open(args.file) as f:
            document = json.load(f)
    except (OSError, ValueError) as exc:
        raise StoreError(f"Can't read {args.file} as JSON ({exc}).") from exc
    entry_id = store.import_document(document)
    print(f"imported as #{entry_id}")
    return 0
