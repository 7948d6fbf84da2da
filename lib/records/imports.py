"""Exports made elsewhere, read as the untrusted input they are: History's upload and
`python -m lib import` both come here, and store only what `check_bytes` returns.

A file is refused, with one line that says why, before anything is stored, unless it is:
- a regular file (not a device, a directory or a pipe) of at most MAX_FILE_BYTES, read no
  further than that: `import /dev/zero` can neither hang nor fill the memory;
- UTF-8 JSON nested at most MAX_DEPTH deep, holding at most MAX_VALUES values and MAX_STRINGS
  strings, all counted on its brackets, commas and quotes before it is parsed, so parsing can't
  recurse without end or build tens of millions of objects; NaN and Infinity are not numbers;
- an export (`"format": "inference-latency-explorer/<version>"`): a newer version's fields this
  one doesn't know are ignored, every field it reads must have its type (`lib.core.schema`, via
  `lib.core.results.from_dict` and `lib.records.documents.sweep_from_document`, which name the field), and
  it has at most MAX_POINTS points and MAX_REPETITIONS repetitions per measurement;
- and it opens: everything History shows and exports of it is built first
  (`lib.records.documents.open_entry`), so an import never creates an entry that can't be opened.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from lib.records import documents
from lib.core import schema, text
from lib.core.errors import ExplorerError
from lib.records.store import EXPORT_FORMAT, DamagedEntryError

# The largest export a run can make: 1000 repetitions (the engine's MAX_REPETITIONS, reached by
# very fast runs with a long minimum time) x 512 tokens (RunSpec's most), written with indent=2
# as History and `python -m lib export` write it, is about 30 MB. Twice that, in round numbers.
MAX_FILE_BYTES = 64 * 1024 * 1024
# That export holds about 1.04 million values (two lists of 512 numbers per repetition); four
# times as many still parse into under 200 MB of Python objects.
MAX_VALUES = 4_000_000
# Names of fields, and text: the largest run export has about 17,000 (17 per repetition).
MAX_STRINGS = 1_000_000
# An export is about 7 levels deep (a sweep's points[i].measurement.repetitions[j].metrics);
# the rest is room for a newer version's fields, far below where a parser recurses too deep.
MAX_DEPTH = 32
# A run stops at 1000 repetitions; a sweep's point repeats until its minimum time with no such
# stop, but ten times that is not a measurement anyone made on purpose.
MAX_REPETITIONS = 10_000
# Every batch size (1-64) against 64 values of a second factor: far more than any sweep
# that finishes in a day.
MAX_POINTS = 4096
MAX_NOTE_CHARS = 10_000
MAX_NAME_CHARS = 4096          # model ids may be paths: Linux's longest
FORMAT_NAME = EXPORT_FORMAT.split("/")[0]      # then "/<version>": 1 now, newer ones accepted
CREATED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")

_STRING = re.compile(rb'"[^"]*"')                          # once no \" is left in them
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b"[]{},")
_SAME_BRACKETS = bytes.maketrans(b"{}", b"[]")


class ImportRefusedError(ExplorerError):
    """A file that is not an export this version can open: nothing was stored."""


@dataclass(frozen=True)
class Checked:
    """An export that passed every check, ready for `Store.import_document`."""
    document: dict[str, Any]
    models: tuple[str, ...]    # every model it names (classroom mode allows the catalog's only)


def check_file(path: str | os.PathLike) -> Checked:
    """Read an export from a file; ImportRefusedError says why it can't be imported."""
    name = text.one_line(os.fspath(path), limit=120)
    try:
        # Non-blocking: opening a FIFO waits for a writer otherwise. Regular files ignore it.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ImportRefusedError(f"Can't read {name}: {exc.strerror}.") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ImportRefusedError(f"Can't import {name}: it is {_file_kind(info.st_mode)}, "
                                     "not a file written by `python -m lib export`.")
        _check_size(info.st_size, name)
        with open(descriptor, "rb", closefd=False) as file:
            data = file.read(MAX_FILE_BYTES + 1)      # no further, even if it grew meanwhile
    finally:
        os.close(descriptor)
    return check_bytes(data, name)


def check_bytes(data: bytes, name: str = "the file") -> Checked:
    """Check an export's bytes (an upload, or what `check_file` read)."""
    name = text.one_line(name, limit=120)
    _check_size(len(data), name)
    try:
        document = _parse(data)
        return _checked(document)
    except (schema.DocumentError, ImportRefusedError) as exc:
        raise ImportRefusedError(f"Can't import {name}: {exc}") from None
    except DamagedEntryError as exc:            # it would be stored, then never open
        raise ImportRefusedError(f"Can't import {name}: {exc.reason}") from None


def check_saving(kind: str, document: dict[str, Any]) -> None:
    """The checks of an import, for a live result about to be saved: a load run holds what a
    server sent, as untrusted as any file, and an entry saved must be an entry that opens.
    ImportRefusedError says what is wrong; nothing is saved then."""
    try:
        _checked(_parse(json.dumps({"format": EXPORT_FORMAT, "kind": kind, **document})
                        .encode()))
    except (schema.DocumentError, ImportRefusedError) as exc:
        raise ImportRefusedError(f"it would not open again ({exc})") from None
    except DamagedEntryError as exc:
        raise ImportRefusedError(f"it would not open again ({exc.reason})") from None


def _check_size(size: int, name: str) -> None:
    if size > MAX_FILE_BYTES:
        raise ImportRefusedError(
            f"Can't import {name}: it is larger than {MAX_FILE_BYTES // 2 ** 20} MiB, more "
            "than any export of this app (a run of 1000 repetitions x 512 tokens is about "
            "30 MB).")


def _file_kind(mode: int) -> str:
    for test, words in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a device"),
                        (stat.S_ISBLK, "a device"), (stat.S_ISFIFO, "a pipe (FIFO)"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def _parse(data: bytes) -> Any:
    """JSON, once its shape is known to be small enough to parse."""
    if not data.strip():
        raise ImportRefusedError("it is empty.")
    quotes = data.count(b'"')
    if quotes > 2 * MAX_STRINGS:
        raise ImportRefusedError(f"it holds about {quotes // 2:,} strings, more than any export "
                                 f"of this app (at most {MAX_STRINGS:,}).")
    # Escaped backslashes first (they pair up left to right, as a parser reads them), then
    # escaped quotes: what is left between two quotes is a string, brackets and commas in it
    # are text. bytes.replace makes no object per match, however many there are.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = _STRING.sub(b"", unescaped).translate(None, _NOT_STRUCTURE)
    brackets = structure.translate(_SAME_BRACKETS, b",")
    values = len(structure) - len(brackets) + brackets.count(b"[") + 1
    if values > MAX_VALUES:
        raise ImportRefusedError(f"it holds about {values:,} values, more than any export of "
                                 f"this app (at most {MAX_VALUES:,}).")
    # Each pass removes the innermost pairs, one level of nesting. Pairs still left after
    # MAX_DEPTH passes are nested deeper than that; brackets left without a pair aren't JSON.
    for _ in range(MAX_DEPTH):
        if not brackets:
            break
        brackets = brackets.replace(b"[]", b"")
    if b"[]" in brackets:
        raise ImportRefusedError(f"it is nested more than {MAX_DEPTH} levels deep: not an "
                                 "export of this app.")
    if brackets:
        raise ImportRefusedError("it is not JSON: its brackets don't pair up (was it cut "
                                 "short?).")
    try:
        decoded = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRefusedError(f"it is not UTF-8 text (byte {data[exc.start]:#04x} at "
                                 f"position {exc.start:,}).") from None
    try:
        return json.loads(decoded, parse_constant=_not_a_number)
    except ValueError as exc:       # JSONDecodeError, and a number with too many digits
        raise ImportRefusedError(f"it is not JSON ({text.one_line(exc, limit=200)}).") from None


def _not_a_number(word: str) -> None:
    raise ImportRefusedError(f"it holds {word}, which is not a number the app can compute with.")


def _checked(document: Any) -> Checked:
    """The export's own fields, its size in points and repetitions, then open it."""
    if not isinstance(document, dict):
        raise ImportRefusedError("it is not an Inference Latency Explorer export (one JSON "
                                 "object), but a JSON " + ("list." if isinstance(document, list)
                                                            else "value."))
    declared = schema.string(schema.member(document, "format", "", required=True), "format",
                             limit=100)
    name, _, version = declared.partition("/")
    if name != FORMAT_NAME or not version.isdecimal() or int(version) < 1:
        raise ImportRefusedError(f"it is not an Inference Latency Explorer export (its "
                                 f"'format' should be {EXPORT_FORMAT!r}).")
    kind = schema.choice(schema.member(document, "kind", "", required=True), "kind",
                         ("run", "sweep", "load"))
    created_at = schema.optional(document, "created_at", "", schema.string, limit=40)
    if created_at is not None and not CREATED_AT.fullmatch(created_at):
        raise schema.DocumentError("created_at: expected a UTC time like 2026-11-30T14:05:00Z")
    schema.optional(document, "status", "", schema.choice, ("complete", "partial"))
    schema.optional(document, "note", "", schema.string, limit=MAX_NOTE_CHARS)
    schema.optional(document, "imported_from", "", schema.string, limit=MAX_NAME_CHARS)
    environment = schema.optional(document, "environment", "", schema.mapping) or {}
    for key in ("gpu_name", "cpu_model"):           # the store names the machine after them
        schema.optional(environment, key, "environment", schema.string, limit=MAX_NAME_CHARS)
    clean = {**document, "format": EXPORT_FORMAT}    # stored as this version's, extras kept
    if kind == "sweep":
        points = schema.optional(document, "points", "", schema.items, MAX_POINTS,
                                 "points") or []
        for index, point in enumerate(points):
            if isinstance(point, dict) and isinstance(point.get("measurement"), dict):
                _count_repetitions(point["measurement"], f"points[{index}].measurement.")
    else:
        clean.pop("points", None)                    # a run has none; never store stray ones
        if kind == "run":
            _count_repetitions(document, "")
    opened = documents.open_entry(clean)
    models = _models(opened)
    for model in models:
        schema.string(model, "model_id", limit=MAX_NAME_CHARS)
    try:
        json.dumps(clean, allow_nan=False)
    except ValueError:
        raise ImportRefusedError("a number in it is too large: it reads as infinity.") from None
    return Checked(clean, models)


def _count_repetitions(document: dict[str, Any], path: str) -> None:
    repetitions = document.get("repetitions")
    if isinstance(repetitions, list):
        schema.items(repetitions, f"{path}repetitions", MAX_REPETITIONS, "repetitions")


def _models(opened: documents.Opened) -> tuple[str, ...]:
    if opened.kind == "load":
        return (opened.load.model,)
    if opened.kind == "run":
        return (opened.measurement.spec.model_id,)
    result = opened.sweep
    models = [result.base.model_id]
    for point in result.points:
        if point.spec is not None:
            models.append(point.spec.model_id)
        if "model" in point.values:
            models.append(point.values["model"])
    return tuple(dict.fromkeys(models))
