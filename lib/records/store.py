"""Run history in SQLite: every run and sweep, saved as it happens, exported and imported whole.

One database file, `$ILE_DATA_DIR/history.sqlite3` (default `~/.local/share/inference-latency-
explorer`). Promises:
- Several processes and browser sessions may write at once: WAL journal, one short transaction
  per write. A database another program keeps locked is waited for, in short tries: after
  `BUSY_NOTICE_S` the caller's `on_wait` (and the log) says so, and after `BUSY_TIMEOUT_S` it
  gives up with `StoreError`; neither a run nor the History page hangs on it.
- A write is saved once SQLite has committed it to a file that passed `PRAGMA quick_check` when
  it was opened (checked once per version of the file, so it costs milliseconds). A damaged file
  is never written to, never reported as saved and never deleted: the message says where it is
  and to move it aside.
- A sweep's points are saved one by one as they finish, so a sweep killed half-way keeps its
  finished points (its status stays "partial").
- An export is one JSON document with everything (spec, environment, raw per-token timestamps,
  summary); importing it back and exporting again gives the same document (plus where it came
  from). No `eval`: only JSON goes in and out.
- Any database problem raises `StoreError` saying which one (damaged file, locked by another
  program, read-only file or folder, full disk) and what to do; the caller keeps measuring and
  says the result was not saved.
- Each entry has an owner (a one-way browser id from `lib.access.classroom`, or NULL for the host, the
  CLI and databases written before owners existed) and a shared flag. Older databases gain both
  columns the first time they are opened (`_migrate`); nothing else about them changes.
What each problem is called and what to do about it is `lib.records.store_problems`; how a
listed entry is described (its models, device, provenance), `lib.records.listing`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from lib.core.errors import ExplorerError
from lib.core.paths import data_dir
from lib.records import listing, store_problems

EXPORT_FORMAT = "inference-latency-explorer/1"
BUSY_NOTICE_S = 2.0         # a database locked this long: say that we wait
BUSY_TIMEOUT_S = 10.0       # ... and give up after this long (the result is still shown)
BUSY_TRY_S = 0.25           # SQLite's own wait per try, short so the loop can speak in time
BUSY_PAUSE_S = 0.05         # between tries
SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,              -- 'run', 'sweep' or 'load' (lib.serving)
    created_at TEXT NOT NULL,        -- UTC, ISO 8601
    model_id TEXT NOT NULL,
    device TEXT NOT NULL,
    status TEXT NOT NULL,            -- 'complete' or 'partial'
    note TEXT NOT NULL DEFAULT '',
    imported_from TEXT,              -- the machine an imported entry was measured on
    document TEXT NOT NULL,          -- JSON: spec, environment, summary, raw samples
    owner TEXT,                      -- lib.access.classroom owner id; NULL: the host or the CLI
    shared INTEGER NOT NULL DEFAULT 0  -- 1: the host shows it to the whole class
);
CREATE TABLE IF NOT EXISTS sweep_points (
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (entry_id, position)
);
"""

# Columns added after the first release, with their definitions: added to older files on open.
ADDED_COLUMNS = {"owner": "TEXT", "shared": "INTEGER NOT NULL DEFAULT 0"}


class StoreError(ExplorerError):
    """The history database can't be used; measuring still works, results aren't saved."""


class DamagedEntryError(StoreError):
    """One saved entry can't be opened (edited by hand, or written by another version); the
    others can, and it can still be deleted. `reason` is the message without the entry."""

    def __init__(self, which: str, reason: str) -> None:
        super().__init__(f"{which} can't be opened: {reason}")
        self.reason = reason


T = TypeVar("T")
_log = logging.getLogger(__name__)
# Files that passed `PRAGMA quick_check`: path -> (device, inode, size, modified) when checked.
_INTACT: dict[str, tuple[int, int, int, int]] = {}


def default_path() -> Path:
    return data_dir() / "history.sqlite3"


def _migrate(connection: sqlite3.Connection) -> None:
    """Bring a database written by an older version up to this schema, in place."""
    present = {row[1] for row in connection.execute("PRAGMA table_info(entries)")}
    for column, definition in ADDED_COLUMNS.items():
        if column not in present:
            try:
                connection.execute(f"ALTER TABLE entries ADD COLUMN {column} {definition}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):     # another process added it first
                    raise


def _load_model(document: dict[str, Any]) -> str:
    """The model a load run's server ran: the catalog id for a local server, else the name the
    server gave it."""
    target = document.get("target") if isinstance(document.get("target"), dict) else {}
    endpoint = target.get("endpoint") if isinstance(target.get("endpoint"), dict) else {}
    model = target.get("model_id") or endpoint.get("model") or "?"
    return model if isinstance(model, str) else "?"


def _storable(entry_id: int) -> bool:
    """Whether an id can be in the table at all: SQLite's integers have 64 bits, and a larger
    one (`export 99999999999999999999`) is simply not there, not an OverflowError."""
    return -2 ** 63 <= entry_id < 2 ** 63


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _quick_check(connection: sqlite3.Connection) -> list[str]:
    """SQLite's structural check of the whole file, without the slow index cross-checks: ['ok']
    or what is wrong."""
    return [row[0] for row in connection.execute("PRAGMA quick_check")]


class Store:
    """The history file at `path` (default: `default_path()`). `on_wait` hears, once per call,
    that the database is locked by another program and this call waits for it."""

    def __init__(self, path: Path | str | None = None,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self.on_wait = on_wait

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in one transaction, committed or rolled back, tried again while another
        program keeps the database locked (see BUSY_NOTICE_S, BUSY_TIMEOUT_S)."""
        started, told = time.monotonic(), False
        while True:
            try:
                return self._try(work)
            except sqlite3.OperationalError as exc:
                if not store_problems.busy(exc):
                    raise StoreError(store_problems.advice(self.path, exc)) from exc
                waited = time.monotonic() - started
                if waited >= BUSY_TIMEOUT_S:
                    raise StoreError(
                        f"The history database {self.path} is locked by another program; gave "
                        f"up after waiting {waited:.0f} s. Close the program that holds it (a "
                        "database browser, or a stuck copy of this app), then try again."
                    ) from exc
                if waited >= BUSY_NOTICE_S and not told:
                    told = True
                    self._tell_waiting()
            except (OSError, sqlite3.Error) as exc:
                raise StoreError(store_problems.advice(self.path, exc)) from exc
            time.sleep(BUSY_PAUSE_S)

    def _try(self, work: Callable[[sqlite3.Connection], T]) -> T:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=BUSY_TRY_S)
        try:
            self._check_intact(connection)
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.executescript(SCHEMA)
            _migrate(connection)
            with connection:                      # one transaction, committed or rolled back
                return work(connection)
        finally:
            # After a commit the data is safe in the WAL file; a failed checkpoint on close
            # loses nothing, so it must not turn a saved result into "not saved".
            with contextlib.suppress(sqlite3.Error):
                connection.close()

    def _check_intact(self, connection: sqlite3.Connection) -> None:
        """Refuse a damaged file before anything is written to it: `PRAGMA quick_check`, once
        per version of the file (its identity, size and modification time)."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return                                # a new history: nothing to check yet
        version = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        key = str(self.path.resolve())
        if _INTACT.get(key) == version:
            return
        verdict = _quick_check(connection)
        if verdict != ["ok"]:
            problem = next((line for text in verdict for line in text.splitlines()
                            if line and not line.startswith("***")), "failed its check")
            raise StoreError(store_problems.damaged(self.path, problem))
        _INTACT[key] = version

    def _tell_waiting(self) -> None:
        notice = (f"Still waiting for the history database (locked by another program) at "
                  f"{self.path}: giving up after {BUSY_TIMEOUT_S:.0f} s if it stays locked.")
        if self.on_wait is not None:
            _log.info(notice)
            self.on_wait(notice)
        else:
            _log.warning(notice)

    # --- writing ------------------------------------------------------------------------------

    def save_run(self, document: dict[str, Any], owner: str | None = None) -> int:
        """The new entry's id, once committed."""
        spec = document["spec"]
        row = (_now(), spec["model_id"], spec["device"], json.dumps(document), owner)
        return self._run(lambda db: int(db.execute(
            "INSERT INTO entries (kind, created_at, model_id, device, status, document, "
            "owner) VALUES ('run', ?, ?, ?, 'complete', ?, ?)", row).lastrowid))

    def save_load(self, document: dict[str, Any], owner: str | None = None) -> int:
        """A load run (`lib.serving.summary.to_dict`): the new entry's id, once committed."""
        row = (_now(), _load_model(document), json.dumps(document), owner)
        return self._run(lambda db: int(db.execute(
            "INSERT INTO entries (kind, created_at, model_id, device, status, document, "
            "owner) VALUES ('load', ?, ?, 'server', 'complete', ?, ?)", row).lastrowid))

    def start_sweep(self, document: dict[str, Any], owner: str | None = None) -> int:
        """A sweep entry with no points yet; points follow with `add_sweep_point`."""
        base = document["base"]
        row = (_now(), base["model_id"], base["device"], json.dumps(document), owner)
        return self._run(lambda db: int(db.execute(
            "INSERT INTO entries (kind, created_at, model_id, device, status, document, "
            "owner) VALUES ('sweep', ?, ?, ?, 'partial', ?, ?)", row).lastrowid))

    def add_sweep_point(self, entry_id: int, position: int, point: dict[str, Any]) -> None:
        row = (entry_id, position, json.dumps(point))
        self._run(lambda db: db.execute("INSERT OR REPLACE INTO sweep_points VALUES (?, ?, ?)",
                                        row))

    def finish_sweep(self, entry_id: int, stopped: bool) -> None:
        self._run(lambda db: db.execute("UPDATE entries SET status = ? WHERE id = ?",
                                        ("partial" if stopped else "complete", entry_id)))

    def set_note(self, entry_id: int, note: str, only_owner: str | None = None) -> bool:
        """Change the note; with `only_owner`, only if that owner's entry. True if changed."""
        return self._update_own("UPDATE entries SET note = ?", (note,), entry_id, only_owner)

    def delete(self, entry_id: int, only_owner: str | None = None) -> bool:
        """Remove it for good; with `only_owner`, only if that owner's entry. True if deleted."""
        return self._update_own("DELETE FROM entries", (), entry_id, only_owner)

    def set_shared(self, entry_id: int, shared: bool) -> None:
        """Show it to (or hide it from) every classroom visitor. The host's decision."""
        changed = self._run(lambda db: db.execute("UPDATE entries SET shared = ? WHERE id = ?",
                                                  (int(shared), entry_id)).rowcount) \
            if _storable(entry_id) else 0
        if changed == 0:
            raise StoreError(f"No saved run or sweep with id {entry_id}: `python -m lib "
                             "history` lists them.")

    def _update_own(self, statement: str, args: tuple, entry_id: int,
                    only_owner: str | None) -> bool:
        if not _storable(entry_id):
            return False
        query, query_args = statement + " WHERE id = ?", [*args, entry_id]
        if only_owner is not None:
            query += " AND owner = ?"
            query_args.append(only_owner)
        return self._run(lambda db: db.execute(query, query_args).rowcount > 0)

    # --- reading ------------------------------------------------------------------------------

    def list(self, model_id: str | None = None, device: str | None = None,
             since: str | None = None, visible_to: str | None = None) -> list[dict[str, Any]]:
        """Entries newest first, without their documents. `since`: an ISO date.

        Each entry also says what it measured, for labels (`lib.records.wording.entry_label`): `spec`
        (a run's settings), `plan` (a load run's levels), `factors` (a sweep's), `point_values` (each saved point's factor
        values) and `models` (the models it really ran: a model sweep's come from its points,
        not from the settings it started with), `stack` (a sweep's software stack; None when
        it saved none). `model_id` matches any of those models.
        `provenance` says whether its numbers were "measured", "estimated" (a model of the
        hardware: lib.estimate.estimator) or, for a sweep mixing both, "measured and estimated".
        `visible_to`: only that owner's entries and the shared ones (a classroom visitor).
        `device` is where the numbers come from: the device that ran it, or for an estimate its
        hardware profile and device count ('h100-sxm x 8'); `device=` filters on it.
        """
        query = ("SELECT e.id, e.kind, e.created_at, e.model_id, e.device, e.status, e.note, "
                 "e.imported_from, (SELECT COUNT(*) FROM sweep_points p WHERE p.entry_id = e.id), "
                 "e.owner, e.shared, "
                 # A damaged entry's document may not even be JSON: it is listed all the same.
                 "CASE WHEN json_valid(e.document) THEN json_extract(e.document, '$.factors') END, "
                 "CASE WHEN e.kind = 'run' AND json_valid(e.document) "
                 "THEN json_extract(e.document, '$.spec') "
                 "WHEN e.kind = 'load' AND json_valid(e.document) "
                 "THEN json_extract(e.document, '$.plan') END, "
                 # A load run's target kind ('simulated': nothing ran), hardware and devices
                 # stand where a run's provenance and a sweep's base hardware and count do.
                 "CASE WHEN NOT json_valid(e.document) THEN NULL WHEN e.kind = 'load' "
                 "THEN json_extract(e.document, '$.target.kind') "
                 "ELSE json_extract(e.document, '$.provenance.kind') END, "
                 "CASE WHEN NOT json_valid(e.document) THEN NULL WHEN e.kind = 'load' "
                 "THEN json_extract(e.document, '$.target.hardware') "
                 "ELSE json_extract(e.document, '$.base.hardware') END, "
                 "CASE WHEN json_valid(e.document) "
                 "THEN json_extract(e.document, '$.base.stack') END, "
                 "CASE WHEN NOT json_valid(e.document) THEN NULL WHEN e.kind = 'load' "
                 "THEN json_extract(e.document, '$.target.gpus') "
                 "ELSE json_extract(e.document, '$.base.gpus') END "
                 "FROM entries e WHERE 1 = 1")
        args: list[Any] = []
        if since:
            query += " AND e.created_at >= ?"
            args.append(since)
        if visible_to is not None:
            query += " AND (e.owner = ? OR e.shared = 1)"
            args.append(visible_to)
        def read(db: sqlite3.Connection) -> tuple[list, list]:
            return (db.execute(query + " ORDER BY e.id DESC", args).fetchall(),
                    db.execute("SELECT entry_id, json_extract(document, '$.values'), "
                               "json_extract(document, '$.measurement.spec.model_id'), "
                               "json_extract(document, '$.measurement.provenance.kind') "
                               "FROM sweep_points WHERE json_valid(document) "
                               # grid order, the values as chosen, not as they finished
                               "ORDER BY entry_id, json_extract(document, '$.index'), "
                               "position").fetchall())
        rows, points = self._run(read)
        return listing.entries(rows, points, model_id, device)

    def export(self, entry_id: int) -> dict[str, Any]:
        """Everything about one entry, as one JSON-ready document. DamagedEntryError when what
        it saved is not even JSON (`lib.records.documents.open_entry` checks the rest)."""
        def read(db: sqlite3.Connection) -> tuple[tuple, list]:
            row = db.execute("SELECT kind, created_at, status, note, imported_from, document "
                             "FROM entries WHERE id = ?", (entry_id,)).fetchone() \
                if _storable(entry_id) else None
            if row is None:
                raise StoreError(f"No saved run or sweep with id {entry_id}: `python -m lib "
                                 "history` lists them.")
            point_texts = [doc for (doc,) in db.execute(
                "SELECT document FROM sweep_points WHERE entry_id = ? ORDER BY position",
                (entry_id,))]
            return row, point_texts
        row, point_texts = self._run(read)
        kind, created_at, status, note, imported_from, document = row
        try:
            body = json.loads(document)
            points = [json.loads(text) for text in point_texts]
        except (TypeError, ValueError) as exc:
            raise DamagedEntryError(f"#{entry_id}", f"what it saved is not JSON ({exc}).") \
                from exc
        if not isinstance(body, dict):
            raise DamagedEntryError(f"#{entry_id}", "what it saved is not a JSON object.")
        exported = {"format": EXPORT_FORMAT, "kind": kind, "created_at": created_at,
                    "status": status, "note": note, "imported_from": imported_from, **body}
        if kind == "sweep":
            exported["points"] = points
        return exported

    def import_document(self, document: dict[str, Any], owner: str | None = None) -> int:
        """Add an exported document; it is marked with the machine it was measured on and
        belongs to `owner` (whoever imported it), never to the owner it had elsewhere."""
        if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT \
                or document.get("kind") not in {"run", "sweep", "load"}:
            raise StoreError("This file is not an Inference Latency Explorer export (its "
                             f"'format' should be {EXPORT_FORMAT!r}).")
        body = {k: v for k, v in document.items()
                if k not in {"format", "kind", "created_at", "status", "note", "imported_from",
                             "points"}}
        spec = body.get("spec") or body.get("base") or \
            ({"model_id": _load_model(body), "device": "server"}
             if document["kind"] == "load" else {})
        environment = body.get("environment") or {}
        origin = document.get("imported_from") or ", ".join(
            str(environment[k]) for k in ("gpu_name", "cpu_model") if environment.get(k)) \
            or "unknown machine"
        def insert(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO entries (kind, created_at, model_id, device, status, note, "
                "imported_from, document, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (document["kind"], document.get("created_at") or _now(),
                 spec.get("model_id", "?"), spec.get("device", "?"),
                 document.get("status", "complete"), document.get("note", ""), origin,
                 json.dumps(body), owner))
            entry_id = int(cursor.lastrowid)
            for position, point in enumerate(document.get("points") or []):
                db.execute("INSERT INTO sweep_points VALUES (?, ?, ?)",
                           (entry_id, position, json.dumps(point)))
            return entry_id
        return self._run(insert)
