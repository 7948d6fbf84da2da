"""The command line's parser: every command and its flags.

The run flags are generated from RunSpec (`lib.core.spec_text.add_arguments`), with `--prompt-file`
beside `--prompt`; the argument types that refuse hostile values are `lib.cli.arguments`, and
`load`'s flags are `lib.cli.load_test`'s.
"""

from __future__ import annotations

import argparse
import functools

from lib.cli import arguments, lessons, load_test
from lib.core import spec as run_spec
from lib.core import spec_text
from lib.measure.factors import FACTORS, current_name

SWEEP_DEFAULTS = {"repetitions": 3, "min_duration_s": 0.5}    # per point: a sweep has many
DEFAULT_BUDGET_S = 120.0                   # lib.measure.budget.DEFAULT_BUDGET_S, without importing it
THIS_MACHINE = "this"                      # lib.estimate.hardware.THIS, without importing it here
ESTIMATE_DTYPES = run_spec.DTYPES + ("float8",)   # lib.estimate.estimator.ESTIMATE_DTYPES


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The whole command line, built once per process: it reads only constants (RunSpec's and
    LoadPlan's fields, the factors), and parsing leaves it unchanged."""
    parser = arguments.Parser(prog="python -m lib",
                              description="Inference Latency Explorer, headless.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=arguments.Parser)
    run = commands.add_parser("run", help="time one run and print its metrics")
    _add_spec_arguments(run)
    run.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    sweep = commands.add_parser("sweep", help="vary one factor (or two) and tabulate the metrics")
    _add_spec_arguments(sweep, SWEEP_DEFAULTS)
    # `type` first: an old factor name (a script written before a rename) still works.
    sweep.add_argument("--factor", required=True, type=current_name, choices=list(FACTORS),
                       help="what to vary")
    sweep.add_argument("--values", default=None, type=arguments.text,
                       help="comma-separated values (default: a sensible range per factor); "
                            "device also takes hardware profile ids (h200, tpu-v6e, ...), "
                            "estimated instead of measured")
    sweep.add_argument("--factor2", default=None, type=current_name, choices=list(FACTORS),
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
    estimated.add_argument("--acceptance-rate", type=arguments.share, default=None,
                           help="with --speculative: the share of guesses accepted (0-1); "
                                "default: the rate measured here for that method and prompt")
    estimated.add_argument("--price-per-hour", type=arguments.price, default=None,
                           metavar="USD", help="your price of one device-hour, for the cost of "
                           "a million tokens (default: the profile's listed on-demand price)")
    profiles = commands.add_parser("hardware", help="list the hardware profiles for estimates")
    profiles.add_argument("--json", action="store_true",
                          help="print a JSON list instead of a table")
    listing = commands.add_parser("models", help="list the model catalog with sizes and shapes")
    listing.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    load_test.add_parser(commands)
    load_test.add_capacity_parser(commands)
    lessons.add_parsers(commands)
    distilled = commands.add_parser(
        "distill", help="train a smaller student to match a model (a few minutes on a CPU), "
        "saved as a model folder you can run and compare")
    distilled.add_argument("--model", default=run_spec.DEFAULT_MODEL_ID,
                           help="the teacher: a catalog model with trained weights")
    distilled.add_argument("--layers", type=arguments.count, default=10,
                           help="decoder layers the student keeps, spread evenly (default 10)")
    distilled.add_argument("--steps", type=arguments.count, default=300,
                           help="training steps at most (default 300)")
    distilled.add_argument("--minutes", type=arguments.minutes, default=8.0,
                           help="time budget for training; it stops at the budget (default 8)")
    distilled.add_argument("--json", action="store_true", help="print its provenance as JSON")
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
    spec_text.add_arguments(parser, defaults, groups={"prompt_text": prompt}, choices=choices)
    prompt.add_argument(
        "--prompt-file", dest="prompt_text", type=arguments.prompt_file, default=argparse.SUPPRESS,
        metavar="PATH", help="read the prompt from this UTF-8 text file ('-': standard input), "
        f"at most {arguments.PROMPT_FILE_MAX_BYTES:,} bytes")
