"""Classroom mode: one app served to a room, each visitor with their own history.

Off by default (one person, one machine: everyone is the host and sees everything). With
`ILE_CLASSROOM=1` in the environment:
- every browser session has an *owner*: a hash of its browser cookie (so two tabs of one browser
  are one person), else of the Streamlit session id. The hash is one-way: the store never holds
  the cookie itself;
- the *host* is whoever entered the host code (`lib.access.network`; not whoever connects from a loopback
  address, since behind a reverse proxy every visitor does). The host sees every entry, marks
  entries shared with the class, and may delete or annotate any;
- everyone else sees their own entries plus the shared ones, and deletes or annotates only
  their own;
- visitors run the catalog's models only: no local paths or hub ids typed in, linked or
  imported (the host may);
- each owner has at most one run queued or running at a time (`RunTurns`): a second press, from
  another tab say, is told to wait instead of piling up in the machine's queue.
This module is pure (no Streamlit): `lib.ui.classroom_view` reads the browser's cookie and address.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from lib.core.errors import ExplorerError

ENV = "ILE_CLASSROOM"
OWNER_SALT = b"inference-latency-explorer/owner/1"
OWNER_HEX_CHARS = 16


class ClassroomError(ExplorerError):
    """Something classroom mode does not allow; the message says why and what to do."""


def enabled(environ: dict[str, str] | None = None) -> bool:
    value = (environ if environ is not None else os.environ).get(ENV, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


def is_loopback(address: str | None) -> bool:
    """True for this machine's own addresses. Streamlit reports a loopback client as None."""
    if address is None or address.strip().lower() in {"", "localhost"}:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _xsrf_token(cookie: str) -> str:
    """Tornado's XSRF cookie, version 2, is `2|mask|masked token|time`: the mask may change
    between writes of the same token, so the identity is the unmasked token."""
    parts = cookie.split("|")
    if len(parts) == 4 and parts[0] == "2":
        try:
            mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
        except ValueError:
            return cookie
        return bytes(m ^ mask[i % len(mask)] for i, m in enumerate(masked)).hex() if mask \
            else cookie
    return cookie


def owner_id(cookie: str | None, session_id: str | None) -> str:
    """A stable, one-way id for one browser: its cookie if it sent one, else this session."""
    if cookie:
        source = b"cookie:" + _xsrf_token(cookie).encode()
    else:
        source = b"session:" + (session_id or "unknown").encode()
    return hashlib.sha256(OWNER_SALT + source).hexdigest()[:OWNER_HEX_CHARS]


@dataclass(frozen=True)
class Viewer:
    """Who is looking at the history: their owner id, and whether they are the host."""
    owner: str | None
    is_host: bool
    classroom: bool = False

    def can_see(self, entry: dict[str, Any]) -> bool:
        return self.is_host or bool(entry.get("shared")) or self.owns(entry)

    def owns(self, entry: dict[str, Any]) -> bool:
        return self.owner is not None and entry.get("owner") == self.owner

    def can_edit(self, entry: dict[str, Any]) -> bool:
        """Delete it, change its note."""
        return self.is_host or self.owns(entry)

    def whose(self, entry: dict[str, Any]) -> str:
        """For the History list: 'you', 'shared by the host', 'a student' ..."""
        if self.owns(entry):
            return "you" + (" (shared)" if entry.get("shared") else "")
        if entry.get("owner") is None:
            who = "host"
        else:
            who = "another visitor"
        return who + (" (shared)" if entry.get("shared") else "")


HOST = Viewer(owner=None, is_host=True)          # classroom off, or the CLI


def viewer(cookie: str | None, session_id: str | None, host_code_entered: bool,
           environ: dict[str, str] | None = None) -> Viewer:
    """The viewer of one browser session. With classroom mode off everyone is the host."""
    if not enabled(environ):
        return HOST
    return Viewer(owner=owner_id(cookie, session_id), is_host=host_code_entered, classroom=True)


def check_models(model_ids: Iterable[str], where: str) -> None:
    """Classroom mode runs the catalog's models only: refuse paths and hub ids."""
    from lib.models.catalog import CATALOG

    unlisted = sorted({m for m in model_ids if m and m not in CATALOG})
    if unlisted:
        raise ClassroomError(
            f"{where} uses a model that is not in the app's list ({', '.join(unlisted)}). In "
            "classroom mode only the listed models run, so nobody's files or downloads are "
            "touched: pick a listed model instead.")


class RunTurns:
    """At most one queued or running measurement per owner, server-wide (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, str] = {}

    def active(self, owner: str) -> str | None:
        with self._lock:
            return self._active.get(owner)

    @contextlib.contextmanager
    def turn(self, owner: str | None, description: str) -> Iterator[None]:
        """Hold this owner's one turn while the run waits and runs; ClassroomError if taken."""
        if owner is None:
            yield
            return
        with self._lock:
            if owner in self._active:
                raise ClassroomError(
                    f"You already have a run waiting or running ({self._active[owner]}), "
                    "perhaps in another tab. Wait for it to finish, then press the button "
                    "again: one run at a time each keeps the queue fair for the whole class.")
            self._active[owner] = description
        try:
            yield
        finally:
            with self._lock:
                self._active.pop(owner, None)
