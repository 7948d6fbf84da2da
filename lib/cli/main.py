"""Command line: `python -m lib run|sweep|load|estimate|hardware|machine|models|history|...`.

Needs only the engine's dependencies (torch, transformers, psutil), never Streamlit or plotly.
Every argument is checked before torch or transformers is imported and before anything is saved
(RunSpec, the model id, the context length, the cores, every point of a sweep, the prompt file,
the CSV path), so a bad one is refused within a second or two and a refused sweep leaves no
history entry; bad arguments and refused runs exit with status 2 and one line on stderr, no
traceback. The parser is `lib.cli.parser`, the types that refuse hostile values
`lib.cli.arguments`; the commands are `lib.cli.measuring` (run, sweep), `lib.cli.lookups`
(models, hardware, estimate, machine), `lib.cli.saved` (history, export, import, delete, share)
and `lib.cli.load_test` (load: a server under load); all print through `lib.cli.output`.
`entry()`, which `python -m lib` runs, ends quietly when the reader of stdout goes away
(`python -m lib history | head`).
"""

from __future__ import annotations

import os
import sys

from lib.cli import arguments, lessons, lookups, measuring, saved
from lib.cli.parser import build_parser
from lib.cli.output import out, print_json, quiet_transformers, say
from lib.core import spec_text
from lib.core.errors import ExplorerError
from lib.core.text import one_line


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
            return lookups.models(as_json=args.json)
        if args.command == "machine":
            return lookups.machine(refresh=args.refresh, as_json=args.json)
        if args.command == "hardware":
            return lookups.hardware(as_json=args.json)
        if args.command == "estimate":
            return lookups.estimate(args)
        if args.command == "distill":
            return measuring.distill(args)
        if args.command == "lessons":
            return lessons.list_lessons(args)
        if args.command == "lesson":
            return lessons.take_lesson(args)
        if args.command == "plan":
            from lib.cli import load_test
            return load_test.capacity(args, out, print_json)
        if args.command == "load":
            from lib.cli import load_test
            quiet_transformers()
            return load_test.run(args, out, say, print_json)
        if args.command in {"history", "export", "import", "delete", "share"}:
            return saved.history(args)
        spec = spec_text.from_arguments(args)
        if args.command == "sweep":
            return measuring.run_sweep(spec, measuring.sweep_request(spec, args), args.csv,
                                       args.budget_s, args.json)
        measuring.check_runnable(spec)
        return measuring.run(spec, as_json=args.json)
    except ExplorerError as exc:
        hint = f" {exc.cli_hint}" if exc.cli_hint else ""     # a command: for the CLI only
        say(f"error: {one_line(exc, arguments.ERROR_MAX_CHARS)}{hint}")
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130
