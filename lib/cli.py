"""Command line: `python -m lib run ...` times one run and prints a table or JSON.

Needs only the engine's dependencies (torch, transformers, psutil), never Streamlit or plotly.
Bad arguments and refused runs exit with status 2 and one line on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from lib.errors import ExplorerError
from lib.spec import DEFAULT_MODEL_ID, DEVICES, DTYPES, RunSpec, default_threads, field_info


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:          # one line, exit 2, no usage dump
        self.exit(2, f"error: {message} (see `python -m lib {self.prog.split()[-1]} --help`)\n")


def _help(name: str) -> str:
    info = field_info(name)
    bounds = ""
    if info["min"] is not None:
        bounds = f" [{info['min']}..{info['max']}]" if info["max"] is not None else f" [>= {info['min']}]"
    return info["help"] + bounds


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lib", description="Inference Latency Explorer, headless.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="time one run and print its metrics")
    run.add_argument("--model", default=DEFAULT_MODEL_ID, help=_help("model_id"))
    run.add_argument("--device", default="cpu", choices=DEVICES, help=_help("device"))
    run.add_argument("--dtype", default="float32", choices=DTYPES, help=_help("dtype"))
    run.add_argument("--batch", type=int, default=1, help=_help("batch_size"))
    run.add_argument("--prompt-tokens", type=int, default=64, help=_help("prompt_tokens"))
    run.add_argument("--new-tokens", type=int, default=32, help=_help("new_tokens"))
    run.add_argument("--repetitions", type=int, default=5, help=_help("repetitions"))
    run.add_argument("--min-duration", type=float, default=1.0, help=_help("min_duration_s"))
    run.add_argument("--warmup", type=int, default=1, help=_help("warmup_runs"))
    run.add_argument("--threads", type=int, default=default_threads(), help=_help("threads"))
    run.add_argument("--prompt", default=None, help=_help("prompt_text"))
    run.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    listing = commands.add_parser("models", help="list the model catalog with sizes and shapes")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "models":
        return _models(as_json=args.json)
    try:
        spec = RunSpec(
            model_id=args.model, device=args.device, dtype=args.dtype, batch_size=args.batch,
            prompt_tokens=args.prompt_tokens, new_tokens=args.new_tokens,
            repetitions=args.repetitions, min_duration_s=args.min_duration,
            warmup_runs=args.warmup, threads=args.threads, prompt_text=args.prompt)
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
    from transformers.utils import logging as hf_logging

    from lib import report, runner, stats

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    def status(message: str) -> None:
        print(message, file=sys.stderr)

    measurement = runner.run(spec, on_status=status, on_wait=status)
    summary = stats.summarize(measurement)
    if as_json:
        json.dump(report.to_dict(measurement, summary), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(report.to_text(measurement, summary))
    return 0
