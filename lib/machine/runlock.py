"""One measurement at a time on a machine, taken in turn, with a notice that says when.

Two runs that overlap share cores and memory bandwidth and corrupt each other's numbers. Every
measurement (and every model load, which is just as heavy) takes the machine-wide slot: an
exclusive `flock` on a file in the per-user runtime folder (`lib.core.paths.runtime_dir`, never the
cache folder, which people clean). flock locks belong to an open file, so the slot excludes
other browser sessions (threads of one Streamlit server) and other processes (the CLI) alike,
and the OS releases it if a holder dies. The lock is robust to its file being removed: it is
taken only when the file locked is still the one at the lock's path (one deleted or replaced
between open and flock is opened again), and a holder checks every `KEEP_CHECK_S` that its file
is still there, putting a new one in place and locking it when it is not.

Waiting is first come, first served: a caller takes a ticket, a file in `queue/` named by the
time it arrived, which it keeps locked while it waits (a waiter that died leaves an unlocked
ticket, which the others skip and remove), and only the oldest live ticket competes for the
slot. A waiter is told, through `on_wait` and again every `WAIT_UPDATE_S`: what runs now and
for how long, an estimate of the time it has left, its own place in line and, when every run
ahead has one, an estimate of when its turn comes. The holder writes its estimate at the start
(the caller's, from the run's settings) and rewrites it from measured repetitions as they come
(`Slot.update`); every estimate is labelled as one.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from lib.core.errors import QueueError
from lib.core.paths import runtime_dir

LOCK_NAME = "measurement.lock"
HOLDER_NAME = "measurement.holder.json"
QUEUE_FOLDER = "queue"
WAIT_UPDATE_S = 1.0         # how often a waiter is told again (and looks at the line again)
POLL_S = 0.1                # how often the first in line tries for the slot: a few cheap calls,
                            # while the waiters behind it stay asleep and leave the run in peace
KEEP_CHECK_S = 1.0          # how often a holder checks that its lock file is still in place
REWRITE_S = 1.0             # a holder rewrites its estimate at most this often
OVERRUN_S = 10.0            # a run this far past its estimate no longer "finishes any moment"

_log = logging.getLogger(__name__)
_tickets = itertools.count()


def _lock_path() -> Path:
    return runtime_dir() / LOCK_NAME


def _same_file(fd: int, path: Path) -> bool:
    try:
        at_path = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (at_path.st_dev, at_path.st_ino)


def _try_lock() -> int | None:
    """A descriptor holding the slot, or None if someone else holds it."""
    while True:
        path = _lock_path()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:          # the folder went between making it and opening
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if _same_file(fd, path):
            return fd
        os.close(fd)                       # removed or replaced meanwhile: lock the one there


def _write_json(path: Path, value: dict) -> None:
    """Replace `path` whole, so a reader never sees half a file."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    staging.write_text(json.dumps(value))
    os.replace(staging, path)


def current_holder() -> dict | None:
    """What is running now, as written by the holder; None if nothing is (or it is unreadable)."""
    try:
        return json.loads((runtime_dir() / HOLDER_NAME).read_text())
    except (OSError, ValueError):
        return None


class Slot:
    """The slot, held: what waiters read about the run, kept true while it lasts."""

    def __init__(self, fd: int, description: str, estimate_s: float | None) -> None:
        now = time.time()
        self._fd, self._guard = fd, threading.Lock()
        self.note = {"description": description, "pid": os.getpid(), "started_at": now,
                     "eta_s": estimate_s, "eta_at": now,
                     "eta_from": "settings" if estimate_s is not None else None}
        self._written_at = 0.0
        self._write()
        self._done = threading.Event()
        self._keeper = threading.Thread(target=self._keep, name="ile-slot-keeper", daemon=True)
        self._keeper.start()

    def update(self, eta_s: float | None, source: str = "measured") -> None:
        """A new estimate of the time left (`source`: "measured" repetitions, or "settings").
        Waiters see it; rewritten at most every REWRITE_S, but at once when its source changes."""
        if eta_s is None:
            return
        now = time.time()
        if source == self.note["eta_from"] and now - self._written_at < REWRITE_S:
            return
        self._write(eta_s=max(float(eta_s), 0.0), eta_at=now, eta_from=source)

    def _write(self, **changes) -> None:
        with self._guard:                       # the keeper thread writes too
            self.note.update(changes)
            self._written_at = time.time()
            with contextlib.suppress(OSError, QueueError):   # it informs; the lock counts
                _write_json(runtime_dir() / HOLDER_NAME, self.note)

    def _keep(self) -> None:
        """Put the lock file back if it is removed while held (a cleaned folder): the next
        caller then finds it locked instead of starting alongside."""
        while not self._done.wait(KEEP_CHECK_S):
            try:
                if _same_file(self._fd, _lock_path()):
                    continue
                fd = _try_lock()
            except (OSError, QueueError) as exc:
                _log.warning("The measurement lock can't be put back (%s).", exc)
                continue
            if fd is None:
                _log.warning("The measurement lock was removed during a run, and another run "
                             "took a new one: their numbers may disturb each other.")
                return
            os.close(self._fd)
            self._fd = fd
            self._write()

    def release(self) -> None:
        self._done.set()
        self._keeper.join()
        try:
            with contextlib.suppress(OSError, QueueError):
                held = current_holder()
                if held and held.get("pid") == os.getpid() and \
                        held.get("started_at") == self.note["started_at"]:
                    (runtime_dir() / HOLDER_NAME).unlink()
        finally:
            os.close(self._fd)             # closing releases the flock


class _Ticket:
    """A waiter's place in line: a file it keeps locked while it waits."""

    def __init__(self, description: str, estimate_s: float | None) -> None:
        self.name = f"{time.time_ns():020d}-{os.getpid()}-{next(_tickets)}.ticket"
        self.content = json.dumps({"description": description, "estimate_s": estimate_s})
        self.fd: int | None = None
        self._place()

    def _place(self) -> None:
        folder = runtime_dir() / QUEUE_FOLDER
        folder.mkdir(mode=0o700, exist_ok=True)
        staging = folder / f".{self.name}.new"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)     # locked before it has its name: never seen unlocked
        os.write(fd, self.content.encode())
        os.rename(staging, folder / self.name)
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.path = fd, folder / self.name

    def keep(self) -> None:
        """Put the ticket back, in the same place in line, if the folder was cleaned."""
        if not _same_file(self.fd, self.path):
            self._place()

    def ahead(self) -> list[dict]:
        """The live tickets before this one, oldest first."""
        return [content for name, content in _live_tickets() if name < self.name]

    def remove(self) -> None:
        if _same_file(self.fd, self.path):
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self.fd)


def _live_tickets() -> list[tuple[str, dict]]:
    """Tickets whose waiters still wait, oldest first; a dead waiter's ticket is removed."""
    live = []
    for path in sorted((runtime_dir() / QUEUE_FOLDER).glob("*.ticket")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:                         # its waiter holds it: alive
                try:
                    content = json.loads(os.read(fd, 1 << 16) or b"{}")
                except ValueError:
                    content = {}
                live.append((path.name, content))
                continue
            if _same_file(fd, path):                        # nobody holds it: its waiter died
                with contextlib.suppress(OSError):
                    path.unlink()
        finally:
            os.close(fd)
    return live


@contextlib.contextmanager
def measurement_slot(description: str, on_wait: Callable[[str], None] | None = None,
                     estimate_s: float | None = None):
    """Hold the machine-wide slot for the block; yields the `Slot` (to `update` its estimate).

    `estimate_s`: how long the run will hold the slot, as far as its settings tell (shown to
    those who wait, labelled an estimate). `on_wait` hears the waiting notice."""
    ticket = _Ticket(description, estimate_s)
    queued_at, told_at = time.monotonic(), None
    try:
        while True:
            ticket.keep()
            ahead = ticket.ahead()
            fd = None if ahead else _try_lock()
            if fd is not None:
                break
            now = time.monotonic()
            if on_wait is not None and (told_at is None or now - told_at >= WAIT_UPDATE_S):
                on_wait(_wait_message(current_holder(), ahead, now - queued_at))
                told_at = now
            time.sleep(WAIT_UPDATE_S if ahead else POLL_S)
    finally:
        ticket.remove()
    try:
        slot = Slot(fd, description, estimate_s)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield slot
    finally:
        slot.release()


def _time_left(holder: dict) -> float | None:
    if holder.get("eta_s") is None:
        return None
    return holder["eta_s"] - (time.time() - holder.get("eta_at", time.time()))


def _wait_message(holder: dict | None, ahead: list[dict], waited_s: float) -> str:
    left = _time_left(holder) if holder else None
    if holder:
        running_for = max(time.time() - holder.get("started_at", time.time()), 0)
        if left is None:
            estimate = "no estimate of the time it needs yet"
        elif left >= 1:
            source = "its repetitions so far" if holder.get("eta_from") == "measured" \
                else "its settings"
            estimate = f"about {_duration(left)} left (an estimate from {source})"
        elif left >= -OVERRUN_S:
            estimate = "should finish any moment"
        else:
            estimate = f"{_duration(-left)} past its estimate, so no estimate of the time left"
        what = (f"Another measurement ({holder.get('description', 'unknown')}, running for "
                f"{_duration(running_for)}, {estimate})")
    else:
        what = "Another measurement"
    place = len(ahead) + 1
    line = f"You are {_ordinal(place)} in line"
    if ahead:
        line += f" ({len(ahead)} run{'s wait' if len(ahead) > 1 else ' waits'} before yours)"
    text = (f"{what} is using this machine. {line}; yours has been queued for "
            f"{_duration(waited_s)} and starts as soon as it can, so runs never overlap and "
            "spoil each other's numbers.")
    others = [run.get("estimate_s") for run in ahead]
    if left is not None and left >= -OVERRUN_S and None not in others:
        start_s = max(left, 0) + sum(others)
        text += (f" Yours should start in about {_duration(start_s)} (an estimate)."
                 if start_s >= 1 else " Yours should start any moment.")
    return text


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10,
                                                                                   "th")
    return f"{number}{suffix}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"
