"""The command line's parser and argument types: each refuses a hostile value in one line.

`build_parser` makes every command's flags; the run flags are generated from RunSpec
(`lib.core.spec.add_arguments`), with `--prompt-file` beside `--prompt`.

Anything may arrive on a command line: text that is not UTF-8 (Python hands its bytes over as
lone surrogates), "nan", numbers too big for SQLite, paths to /dev/zero, a FIFO or a folder.
`Parser` is argparse with one-line errors that name the right `--help`, and `text`, `date`,
`entry_id`, `prompt_file` and `csv_path` are argument types that turn each such value into an
`argparse.ArgumentTypeError` saying what to give instead (RunSpec checks its own fields). Files
are read bounded and only when regular: a prompt file holds at most `PROMPT_FILE_MAX_BYTES`, four
bytes for each character of the longest prompt the app accepts.
"""

from __future__ import annotations

import argparse
import datetime
import os
import stat
import sys

from lib.core import spec as run_spec
from lib.measure.factors import FACTORS
from lib.core.text import one_line, terminal

# UTF-8 takes at most 4 bytes a character: a longer file can't hold a prompt the app accepts.
PROMPT_FILE_MAX_BYTES = 4 * run_spec.MAX_PROMPT_TEXT_CHARS
ERROR_MAX_CHARS = 1000        # an error is one line; a value it quotes may be huge


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors that name the right --help, and help cleaned for a
    terminal (help and errors quote what was typed)."""

    def error(self, message: str) -> None:          # one line, exit 2, no usage dump
        self.exit(2, f"error: {one_line(message, ERROR_MAX_CHARS)} (see `{self.prog} --help`)\n")

    def format_help(self) -> str:
        return terminal(super().format_help())

    def format_usage(self) -> str:
        return terminal(super().format_usage())


def _shown(value: str) -> str:
    """A typed value quoted in a message: clipped, and shown as text even if not UTF-8."""
    return repr(one_line(value, 100))


def text(value: str) -> str:
    """Free text (a model id, a device, a list of values) that must be UTF-8."""
    if not run_spec.is_utf8(value):
        raise argparse.ArgumentTypeError(
            f"{_shown(value)} is not valid UTF-8 text (some of its bytes don't decode)")
    return value


def date(value: str) -> str:
    """A day as YYYY-MM-DD, in the form the history compares with (2025-01-05, not 2025-1-5)."""
    try:
        return datetime.datetime.strptime(value, "%Y-%m-%d").date().isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{_shown(value)} is not a date like 2025-01-31") \
            from None


def budget_s(value: str) -> float:
    """A sweep's time budget in seconds: at least 10 (loading alone takes some)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 10 <= seconds <= 86400:
        raise argparse.ArgumentTypeError(
            f"{_shown(value)} is not a time budget: give seconds from 10 to 86400, like 120")
    return seconds


def entry_id(value: str) -> int:
    """A history entry's id: a whole number from 1 up (one too big for SQLite is simply not
    there, which the store says)."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(
            f"{_shown(value)} is not an id that `history` shows (a whole number from 1 up)")
    return number


def prompt_file(path: str) -> str:
    """A prompt file's text: a regular file or '-' (standard input), read to at most
    PROMPT_FILE_MAX_BYTES + 1 bytes, so /dev/zero or a huge file can't fill memory."""
    if path == "-":
        raw = sys.stdin.buffer.read(PROMPT_FILE_MAX_BYTES + 1)
    else:
        try:
            # Non-blocking: a FIFO opens at once instead of waiting for a writer (then refused).
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        except (OSError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"Can't read {_shown(path)} ({reason(exc)})") \
                from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise argparse.ArgumentTypeError(
                f"{_shown(path)} is not a regular file (it is a folder, a device or a pipe): "
                "save the prompt in a file, or give '-' to read standard input")
        with os.fdopen(fd, "rb") as f:
            raw = f.read(PROMPT_FILE_MAX_BYTES + 1)
    if len(raw) > PROMPT_FILE_MAX_BYTES:
        raise argparse.ArgumentTypeError(
            f"{_shown(path)} is larger than {PROMPT_FILE_MAX_BYTES:,} bytes, and a prompt has at "
            f"most {run_spec.MAX_PROMPT_TEXT_CHARS:,} characters: use its first part (the prompt "
            "is fitted to the prompt length anyway)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"{_shown(path)} is not UTF-8 text (the byte at offset {exc.start} can't be "
            "decoded): save it as UTF-8") from None


def csv_path(path: str) -> str:
    """Where --csv may write: a new file in an existing folder, or a regular file (never a
    device, a pipe or a folder), checked before the sweep spends minutes measuring."""
    if not path:
        raise argparse.ArgumentTypeError("name the file to write the table to")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise argparse.ArgumentTypeError(
                f"{_shown(path)} is a symbolic link to nothing: name a file") from None
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            raise argparse.ArgumentTypeError(f"there is no folder {_shown(folder)}") from None
        return path
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"can't use {_shown(path)} ({reason(exc)})") from None
    if not stat.S_ISREG(mode):
        raise argparse.ArgumentTypeError(
            f"{_shown(path)} is not a regular file (it is a folder, a device or a pipe): name a "
            "file to write the table to")
    return path


def reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


SWEEP_DEFAULTS = {"repetitions": 3, "min_duration_s": 0.5}    # per point: a sweep has many
DEFAULT_BUDGET_S = 120.0                   # lib.measure.budget.DEFAULT_BUDGET_S, without importing it
THIS_MACHINE = "this"                      # lib.estimate.hardware.THIS, without importing it here
ESTIMATE_DTYPES = run_spec.DTYPES + ("float8",)   # lib.estimate.estimator.ESTIMATE_DTYPES


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m lib", description="Inference Latency Explorer, headless.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = commands.add_parser("run", help="time one run and print its metrics")
    _add_spec_arguments(run)
    run.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    sweep = commands.add_parser("sweep", help="vary one factor (or two) and tabulate the metrics")
    _add_spec_arguments(sweep, SWEEP_DEFAULTS)
    sweep.add_argument("--factor", required=True, choices=list(FACTORS), help="what to vary")
    sweep.add_argument("--values", default=None, type=text,
                       help="comma-separated values (default: a sensible range per factor); "
                            "device also takes hardware profile ids (h200, tpu-v6e, ...), "
                            "estimated instead of measured")
    sweep.add_argument("--factor2", default=None, choices=list(FACTORS),
                       help="a second factor, for a grid")
    sweep.add_argument("--values2", default=None, type=text,
                       help="values of the second factor")
    sweep.add_argument("--csv", default=None, type=csv_path,
                       help="write the tidy table to this CSV file")
    sweep.add_argument("--budget-s", default=DEFAULT_BUDGET_S, type=budget_s,
                       help="end within about this many seconds, loading included: fewer "
                            "repetitions per point (at least 2) when this machine is too slow "
                            f"or busy for the settings (default {DEFAULT_BUDGET_S:g})")
    sweep.add_argument("--json", action="store_true",
                       help="print one JSON object (points, plan, elapsed_s) instead of a "
                            "table; progress goes to stderr")
    saved = commands.add_parser("history", help="list saved runs and sweeps")
    saved.add_argument("--model", default=None, type=text, help="only this model id")
    saved.add_argument("--device", default=None, type=text, help="only this device")
    saved.add_argument("--since", default=None, type=date,
                       help="only from this date on (YYYY-MM-DD)")
    saved.add_argument("--json", action="store_true", help="print JSON instead of a table")
    export = commands.add_parser("export", help="print one saved run or sweep, everything included")
    export.add_argument("entry_id", type=entry_id, help="the id that `history` shows")
    export.add_argument("--json", action="store_true", help="JSON (the default)")
    export.add_argument("--csv", action="store_true", help="the tidy table as CSV instead")
    imported = commands.add_parser("import", help="add an exported JSON file to the history")
    imported.add_argument("file", help="a file written by `export`")
    deleted = commands.add_parser("delete", help="remove a saved run or sweep for good")
    deleted.add_argument("entry_id", type=entry_id,
                         help="the id that `history` shows")
    shared = commands.add_parser(
        "share", help="classroom mode: show a saved run or sweep to every visitor (or stop)")
    shared.add_argument("entry_id", type=entry_id, help="the id that `history` shows")
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
        "--prompt-file", dest="prompt_text", type=prompt_file, default=argparse.SUPPRESS,
        metavar="PATH", help="read the prompt from this UTF-8 text file ('-': standard input), "
        f"at most {PROMPT_FILE_MAX_BYTES:,} bytes")
