"""What went wrong with the history file, in words: damaged, full disk, read-only, locked.

`lib.records.store` raises `StoreError` with these messages: each says which problem it is, where
the file is, and what to do (move a damaged file aside, free space, make the folder writable or
set `ILE_DATA_DIR` elsewhere, close the program holding a lock). Nothing here deletes anything.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from lib.core.paths import DATA_ENV


def busy(exc: Exception) -> bool:
    """Another connection holds a lock this statement needs (worth trying again)."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in str(exc) \
        or "table is locked" in str(exc) or "busy" in str(exc)


def damaged(path: Path, detail: str) -> str:
    """A damaged history file: where it is, that nothing was deleted, and how to start anew."""
    return (f"The history file {path} is damaged ({detail[:120]}), so nothing can be "
            "saved to it. Nothing was deleted: move it aside (rename it, for example to "
            f"{path.name}.damaged) and the app starts a new, empty history there; "
            f"`sqlite3 {path.name}.damaged .recover` may rescue past results.")


def advice(path: Path, exc: Exception) -> str:
    """What went wrong with the history at `path`, and what to do about it."""
    text = str(exc)
    name = getattr(exc, "sqlite_errorname", None) or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text \
            or "not a database" in text:
        return damaged(path, text)
    io_error = name.startswith("SQLITE_IOERR") or "disk I/O error" in text
    if name.startswith("SQLITE_FULL") or "disk is full" in text \
            or getattr(exc, "errno", None) == errno.ENOSPC or (io_error and _nearly_full(path)):
        # SQLite says "disk I/O error" when writing its journal hits a full disk.
        return (f"The disk holding {path} is full ({text}): free some space, or set "
                f"{DATA_ENV} to a folder on another disk.")
    if io_error:
        return (f"The disk holding {path} failed to read or write it ({text}): check the "
                f"disk, or set {DATA_ENV} to a folder on another disk.")
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) \
            or "readonly" in text or "read-only" in text or "unable to open" in text \
            or isinstance(exc, PermissionError) or getattr(exc, "errno", None) == errno.EROFS:
        return read_only(path, text)
    if busy(exc):
        return (f"The history database {path} is locked by another program ({text}): "
                "close the program that holds it, then try again.")
    return f"Run history unavailable ({text}). Set {DATA_ENV} to another folder if this " \
        "keeps happening."


FULL_BELOW_BYTES = 16 * 2**20      # free space under this, after a failed write: a full disk


def _nearly_full(path: Path) -> bool:
    folder = next((f for f in (path.parent, *path.parent.parents) if f.is_dir()), None)
    try:
        return folder is not None and shutil.disk_usage(folder).free < FULL_BELOW_BYTES
    except OSError:
        return False


def read_only(path: Path, text: str) -> str:
    """The history can't be written: is it the folder or the file, and what to make writable."""
    folder = next(f for f in (path.parent, *path.parent.parents) if f.is_dir())
    if not os.access(folder, os.W_OK | os.X_OK):      # the folder, or where it would go
        return (f"The history folder {folder} is read-only ({text}), so the history can't "
                f"be written there: make it writable, or set {DATA_ENV} to a writable "
                "folder.")
    if path.exists() and not os.access(path, os.W_OK):
        return (f"The history file {path} is read-only ({text}): make it writable "
                f"(chmod u+w), or set {DATA_ENV} to another folder.")
    return (f"The history in {path} can't be written here ({text}): make "
            f"{path.parent} writable, or set {DATA_ENV} to a writable folder.")
