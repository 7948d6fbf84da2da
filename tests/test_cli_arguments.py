"""The CLI's arguments (lib.cli.arguments, lib.cli.main) against hostile values, in-process on the
fake backend (fast).

The hostile matrix builds its argument list from the parsers themselves, so a new flag is
covered the day it is added: every invocation ends with status 0 (it passed validation and
measured, instantly, on the fake backend) or 2 (one line on stderr, no traceback, nothing
saved). Every command is in it, `import`, `export` and `delete` too (their file checks are
tested in detail in test_imports.py). It has one row per type of argument (its converter, or
its list of choices), where every hostile value meets that converter; and one row per
argument, where the values its converter lets through meet that argument's own checks (a
value the converter refuses is refused by argparse alike for every argument of the type).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lib.cli import arguments, output
from lib.cli.parser import build_parser
from lib.core import spec as spec_module
from lib.records.store import Store
from fakes import run_cli as invoke
from sse_server import closed_port_url

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("run", "sweep", "load", "estimate", "hardware", "history", "models", "share", "export",
            "delete", "import")
NOT_UTF8 = os.fsdecode(b"\xff\xfe")
HOSTILE = ["", "nan", "NaN", "inf", "-inf", "99999999999999999999", "1e309", "-1", NOT_UTF8,
           "9" * 5000]
PATHS = ["dev-zero", "directory", "link-to-dev-zero", "dangling-link", "fifo"]
# What each command needs besides the argument under test (a small grid keeps sweeps quick).
BASE = {"run": {}, "sweep": {"--factor": "batch", "--values": "1,2"},
        # a load run against a closed port: every accepted value ends at "Nothing answers"
        "load": {"--target": closed_port_url(), "--rates": "1", "--requests": "1"},
        "estimate": {"--hardware": "h200"}, "hardware": {}, "history": {},
        "models": {}, "share": {"entry_id": "1"}, "export": {"entry_id": "1"},
        "delete": {"entry_id": "1"}, "import": {}}


def _arguments() -> list[tuple[str, argparse.Action]]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(command, action) for command in COMMANDS
            for action in commands.choices[command]._actions
            if not isinstance(action, argparse._HelpAction)]


def _name(action: argparse.Action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest


def _argv(command: str, action: argparse.Action, value: str | None) -> list[str]:
    values = dict(BASE[command])
    if action.nargs == 0:
        values[_name(action)] = None
    else:
        values[_name(action)] = value
    argv = [command]
    for key, item in values.items():
        if key.startswith("-"):
            argv += [key] if item is None else [key, item]
        else:
            argv.append(item)
    return argv


def _hostile_path(kind: str, folder: Path) -> str:
    if kind == "dev-zero":
        return "/dev/zero"
    if kind == "directory":
        return str(folder)
    path = folder / kind
    if kind == "link-to-dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dangling-link":
        path.symlink_to(folder / "nothing-here")
    else:
        os.mkfifo(path)
    return str(path)


@pytest.fixture(autouse=True)
def _this_from_declared_ceilings(monkeypatch):
    """`this` (estimate's default, the first hardware profile) from declared ceilings:
    measuring them takes seconds. (Named apart from conftest's `_declared_ceilings`, which it
    adds to: under the same name it replaced it, and every sweep here measured this machine.)"""
    from fakes import declare_ceilings
    from lib.estimate import hardware
    declare_ceilings(monkeypatch)
    yield
    hardware.this.cache_clear()


def _saved_entries() -> list:
    """The history's entries (opening the database only if it exists: that takes time)."""
    from lib.records.store import default_path
    return Store().list() if default_path().exists() else []


def assert_clean_outcome(argv, status, out, err):
    assert status in (0, 2), (argv, status, err)
    assert "Traceback" not in err
    assert "\x1b" not in out + err
    if status == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
        assert _saved_entries() == [], f"{argv} was refused but left a history entry"
    if status == 0 and "--json" in argv:
        json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))


ARGUMENTS = _arguments()


def _type(action: argparse.Action) -> str:
    """An argument's type as a hostile value meets it: a flag takes no value, a choice is looked
    up in its list, anything else goes through its converter (`str` when it has none)."""
    if action.nargs == 0:
        return "flag"
    if action.choices:
        return "choice"
    return action.type.__name__ if action.type else "str"


TYPES: dict[str, list[tuple[str, argparse.Action]]] = {}
for _command, _action in ARGUMENTS:
    TYPES.setdefault(_type(_action), []).append((_command, _action))


def _lets_through(action: argparse.Action, value: str) -> bool:
    """Whether argparse's own checks (the converter, the choices) accept `value`: only then
    does it reach the argument's own validation."""
    try:
        converted = action.type(value) if action.type else value
    except (argparse.ArgumentTypeError, TypeError, ValueError):
        return False
    return not action.choices or converted in action.choices


@pytest.fixture
def hostile(fake_backend, tmp_path, monkeypatch, capsys):
    """Invoke the CLI with one argument set to each of the hostile values in turn, each time
    from empty standard input and with an empty history (so a refusal after an accepted run
    can still be seen to save nothing)."""
    monkeypatch.chdir(tmp_path)             # a --csv that is accepted writes here
    folder = tmp_path / "hostile-paths"
    folder.mkdir()
    paths = {kind: _hostile_path(kind, folder) for kind in PATHS}

    def invoke_each(command, action, values, keep=lambda value: True):
        tried = 0
        for turn, value in enumerate(values):
            value = paths.get(value, value)
            if not keep(value):
                continue
            monkeypatch.setenv("ILE_DATA_DIR", str(tmp_path / f"data-{turn}"))
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
            argv = _argv(command, action, value)
            assert_clean_outcome(argv, *invoke(argv, capsys))
            tried += 1
        return tried
    return invoke_each


@pytest.mark.parametrize("kind", sorted(set(TYPES) - {"flag"}))    # a flag takes no value
def test_every_type_of_argument_survives_hostile_values(kind, hostile):
    """Each type's first argument, with every hostile value: all of them meet its converter."""
    command, action = TYPES[kind][0]
    assert hostile(command, action, HOSTILE + PATHS) == len(HOSTILE + PATHS)


@pytest.mark.parametrize("command, action", [
    pytest.param(command, action, id=f"{command} {_name(action)}")
    for command, action in ARGUMENTS])
def test_every_argument_survives_the_hostile_values_its_type_lets_through(command, action,
                                                                          hostile):
    """A flag once; any other argument with each hostile value argparse lets through."""
    if action.nargs == 0:
        assert hostile(command, action, [None]) == 1
    else:
        hostile(command, action, HOSTILE + PATHS, keep=lambda value: _lets_through(action, value))


def test_the_matrix_covers_every_argument():
    names = {(command, _name(action)) for command, action in ARGUMENTS}
    assert {("run", "--prompt-file"), ("sweep", "--values2"), ("history", "--since"),
            ("share", "entry_id"), ("run", "--min-duration"), ("export", "--csv"),
            ("delete", "entry_id"), ("import", "file"), ("estimate", "--hardware"),
            ("estimate", "--gpus"), ("run", "--hardware"), ("hardware", "--json"),
            ("run", "--stack"), ("sweep", "--stack"), ("estimate", "--stack")} <= names
    assert {command for command, _ in names} == set(COMMANDS)
    # Every argument has a row of its own and a type (whose row has every hostile value).
    typed = [(command, _name(action)) for arguments in TYPES.values()
             for command, action in arguments]
    assert sorted(typed) == sorted(names) and len(typed) == len(ARGUMENTS)
    assert all(action.nargs == 0 for command, action in TYPES["flag"])
    assert {"flag", "choice", "str", "int", "float", "prompt_file", "csv_path", "date",
            "entry_id"} <= set(TYPES)


# --- each finding of issue 10, on its own ---------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["run", "--prompt", NOT_UTF8], "prompt_text is not valid UTF-8 text"),
    (["run", "--model", NOT_UTF8], "model_id is not valid UTF-8 text"),
    (["history", "--device", NOT_UTF8], "not valid UTF-8 text"),
    (["run", "--min-duration", "nan"], "min_duration_s must be a finite number"),
    (["run", "--min-duration=-inf"], "min_duration_s must be a finite number"),
    (["run", "--min-duration", "1e309"], "min_duration_s must be a finite number"),
    (["run", "--model", "9" * 5000], "model_id is 5,000 characters long"),
    (["history", "--since", "last tuesday"], "'last tuesday' is not a date like 2025-01-31"),
    (["history", "--since", "2025-02-30"], "is not a date like"),
    (["share", "99999999999999999999"], "No saved run or sweep with id 99999999999999999999"),
    (["share", "-5"], "is not an id that `history` shows"),
    (["share", "-1"], "is not an id that `history` shows"),
    (["sweep", "--factor", "batch", "--values", "1,nan"], "whole numbers"),
    (["sweep", "--factor", "batch", "--values", "1,inf"], "whole numbers"),
    (["sweep", "--factor", "batch", "--values", "1,99999999999999999999"],
     "batch_size must be between 1 and 64"),
    (["sweep", "--factor", "batch", "--values", "-1"], "batch_size must be between 1 and 64"),
    (["sweep", "--factor", "batch", "--values", " , "], "No values given for batch size"),
    (["sweep", "--factor", "batch", "--values2", "1,2"], "--values2 needs --factor2"),
])
def test_bad_values_are_refused_in_one_line(argv, message, fake_backend, capsys):
    status, out, err = invoke(argv, capsys)
    assert status == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and out == ""
    assert NOT_UTF8 not in err


@pytest.mark.parametrize("argv, hint", [
    (["fly"], "(see `python -m lib --help`)"),
    (["run", "--batch", "x"], "(see `python -m lib run --help`)"),
    (["sweep"], "(see `python -m lib sweep --help`)"),
])
def test_error_hints_name_the_right_help(argv, hint, capsys):
    status, _, err = invoke(argv, capsys)
    assert status == 2 and err.strip().endswith(hint), err


def test_threads_are_capped_at_this_machines_cores(fake_backend, capsys, monkeypatch):
    monkeypatch.setattr(spec_module, "default_threads", lambda: 2)
    status, _, err = invoke(["run", "--threads", "3"], capsys)
    assert status == 2
    assert "threads=3, but this machine has 2 CPU cores: use at most 2" in err
    status, _, err = invoke(["sweep", "--factor", "threads", "--values", "1,3"], capsys)
    assert status == 2 and "this machine has 2 CPU cores" in err
    assert Store().list() == []


def test_default_threads_are_the_cores_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    assert spec_module.default_threads() == 3


@pytest.mark.parametrize("argv", [
    ["sweep", "--factor", "batch", "--factor2", "batch"],
    ["sweep", "--factor", "batch", "--values", "0,1"],
    ["sweep", "--factor", "model", "--values", "smollm2-135m-instruct,gpt-9"],
    ["sweep", "--factor", "batch", "--model", "gpt-9"],
    ["sweep", "--factor", "prompt", "--values", "8192,16384", "--model", "gpt2"],
    ["sweep", "--factor", "batch", "--csv", "/no/such/folder/out.csv"],
])
def test_a_refused_sweep_leaves_no_history_entry(argv, fake_backend, capsys):
    status, _, err = invoke(argv, capsys)
    assert status == 2 and err.startswith("error: "), err
    assert Store().list() == []
    assert fake_backend.loads == []                       # no model was loaded either


def test_a_sweep_with_some_impossible_points_still_runs(fake_backend, capsys):
    """A point the model can't take (context too long) is a skip, as in the app; only a grid
    with no possible point is refused."""
    status, out, err = invoke(["sweep", "--factor", "prompt", "--values", "512,2048",
                               "--model", "gpt2", "--new-tokens", "4"], capsys)
    assert status == 0, err
    assert len(Store().list()) == 1


def test_json_output_is_strict():
    buffer = io.StringIO()
    sys_stdout, sys.stdout = sys.stdout, buffer
    try:
        output.print_json({"median": float("nan"), "values": [1.0, float("inf"), -float("inf")]})
    finally:
        sys.stdout = sys_stdout
    assert json.loads(buffer.getvalue()) == {"median": None, "values": [1.0, None, None]}


def test_history_shows_hostile_notes_and_ids_without_their_escapes(capsys):
    from fakes import measure
    from lib.records import saving
    from lib.core import stats
    from lib.core.spec import RunSpec

    measurement = measure(RunSpec(prompt_tokens=16, new_tokens=3, repetitions=1,
                                  min_duration_s=0.0, threads=1))
    entry_id, _ = saving.save_run(measurement, stats.summarize(measurement))
    document = Store().export(entry_id)
    document.update(note="\x1b[2J\x1b]0;pwned\x07cleared\u202e", imported_from="\x1b[31mred")
    document["spec"]["model_id"] = "evil\x1b]0;title\x07-model"
    Store().import_document(document)
    status, out, err = invoke(["history"], capsys)
    assert status == 0 and err == ""
    assert "cleared" in out and "evil-model" in out and "red" in out
    assert not any(ch in out for ch in "\x1b\x07\u202e")


def test_error_messages_lose_their_escapes(fake_backend, capsys):
    status, _, err = invoke(["run", "--model", "gpt\x1b]0;pwned\x07-9"], capsys)
    assert status == 2 and "Unknown model 'gpt-9'" in err and "\x1b" not in err


def test_help_and_argparse_messages_lose_their_escapes(capsys):
    status, _, err = invoke(["run", "--dtype", "\x1b[2Jint3"], capsys)
    assert status == 2 and "invalid choice" in err and "\x1b" not in err


# --- --prompt-file ----------------------------------------------------------------------------

def _run_json(argv, capsys) -> dict:
    status, out, err = invoke(["run", *argv, "--json", "--new-tokens", "2", "--repetitions", "1",
                               "--min-duration", "0"], capsys)
    assert status == 0, err
    return json.loads(out)


def test_prompt_file_is_read_as_the_prompt(tmp_path, fake_backend, capsys):
    path = tmp_path / "prompt.txt"
    path.write_text("Tell me about caches. ✓\n", encoding="utf-8")
    assert _run_json(["--prompt-file", str(path)], capsys)["spec"]["prompt_text"] == \
        "Tell me about caches. ✓\n"


def test_prompt_file_dash_reads_standard_input(fake_backend, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("from a pipe".encode())))
    assert _run_json(["--prompt-file", "-"], capsys)["spec"]["prompt_text"] == "from a pipe"


@pytest.mark.parametrize("kind, message", [
    ("huge", "is larger than 400,000 bytes"),
    ("not-utf8", "is not UTF-8 text (the byte at offset 6 can't be decoded)"),
    ("empty", "Your prompt is empty"),
    ("missing", "Can't read"),
    ("dev-zero", "is not a regular file"),
    ("directory", "is not a regular file"),
    ("link-to-dev-zero", "is not a regular file"),
    ("fifo", "is not a regular file"),
])
def test_prompt_file_refusals(kind, message, tmp_path, fake_backend, capsys):
    if kind in PATHS:
        path = _hostile_path(kind, tmp_path)
    else:
        path = tmp_path / kind
        if kind == "huge":
            path.write_bytes(b"a" * (10 * 2**20))        # 10 MB: too long for --prompt too
        elif kind == "not-utf8":
            path.write_bytes(b"hello \xff\xfe")
        elif kind == "empty":
            path.write_bytes(b"  \n")
    status, out, err = invoke(["run", "--prompt-file", str(path)], capsys)
    assert status == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and fake_backend.loads == []


def test_prompt_and_prompt_file_exclude_each_other(tmp_path, capsys):
    path = tmp_path / "p.txt"
    path.write_text("hi")
    status, _, err = invoke(["run", "--prompt", "x", "--prompt-file", str(path)], capsys)
    assert status == 2 and "not allowed with argument --prompt" in err


def test_prompt_file_limit_follows_the_longest_prompt():
    assert arguments.PROMPT_FILE_MAX_BYTES == 4 * spec_module.MAX_PROMPT_TEXT_CHARS


# --- the shell around main ------------------------------------------------------------------

@pytest.mark.parametrize("args, status", [
    (["history"], {1}),
    (["--help"], {0, 1}),         # argparse itself ignores a failed write of the help
])
def test_a_closed_pipe_ends_quietly(args, status, tmp_path):
    """`python -m lib history | head -1`: the reader left; no BrokenPipeError traceback."""
    from fakes import measure
    from lib.records import saving
    from lib.core import stats
    from lib.core.spec import RunSpec

    measurement = measure(RunSpec(prompt_tokens=16, new_tokens=3, repetitions=1,
                                  min_duration_s=0.0, threads=1))
    for _ in range(3):
        saving.save_run(measurement, stats.summarize(measurement))
    read_end, write_end = os.pipe()
    os.close(read_end)                     # nobody will ever read: the first write fails
    try:
        result = subprocess.run([sys.executable, "-m", "lib", *args], cwd=ROOT,
                                stdout=write_end, stderr=subprocess.PIPE, text=True,
                                timeout=60, env=dict(os.environ))
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode in status     # 1: what Python's docs do on EPIPE (see lib/cli/main.py)
