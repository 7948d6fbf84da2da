"""The command line's parser and argument types: each refuses a hostile value in one line.

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


def count(value: str) -> int:
    """A small whole number of things (layers, steps): from 1 to 100,000."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= 100_000:
        raise argparse.ArgumentTypeError(
            f"{_shown(value)} is not a count: give a whole number from 1 to 100000, like 10")
    return number


def minutes(value: str) -> float:
    """A time budget in minutes: from 0.1 to 120."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0.1 <= number <= 120:
        raise argparse.ArgumentTypeError(
            f"{_shown(value)} is not a time budget: give minutes from 0.1 to 120, like 8")
    return number


def share(value: str) -> float:
    """A share from 0 to 1 (an acceptance rate)."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(
            f"{_shown(value)} is not a share: give a number from 0 to 1, like 0.6")
    return number


def price(value: str) -> float:
    """A price per hour in dollars, more than 0 and at most `cost.MOST_PER_HOUR`."""
    from lib.estimate.cost import MOST_PER_HOUR

    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 < number <= MOST_PER_HOUR:
        raise argparse.ArgumentTypeError(
            f"{_shown(value)} is not a price: give dollars per hour, more than 0 and at most "
            "10,000, like 3.5")
    return number


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
