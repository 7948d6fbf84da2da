"""Who may use the app: local-only by default, codes for a classroom.

The app measures on the machine it runs on and can read model folders there, so it is not a
public service. Three situations:
- **local (the default)**: Streamlit listens on 127.0.0.1 (`.streamlit/config.toml`), so only
  this computer can connect, and its user is the host. No codes.
- **listening on a network without classroom mode** (someone passed `--server.address
  0.0.0.0`): visitors from other computers are refused with an explanation; this computer
  still works, with a warning saying how to open the app to a room safely.
- **classroom mode** (`ILE_CLASSROOM=1`): every visitor, this computer included, must enter the
  *access code* before any page works; host actions (deleting or annotating others' entries,
  sharing results with the class, your own model folders) need the separate *host code*.
  Host status comes from the code, not from the address: behind a reverse proxy every visitor
  looks local. Without an access code configured, nobody gets in and the page says how to set
  one; the two codes must differ.
Codes come from the environment (`ILE_ACCESS_CODE`, `ILE_HOST_CODE`) or from
`.streamlit/secrets.toml` (`access_code`, `host_code`); they are compared in constant time, and a
client address that keeps guessing waits longer after each wrong code (`Attempts`).
This module is pure (no Streamlit): `lib.ui.door` draws the forms.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from lib.access import classroom

ACCESS_ENV, HOST_ENV = "ILE_ACCESS_CODE", "ILE_HOST_CODE"
ACCESS_SECRET, HOST_SECRET = "access_code", "host_code"
MIN_CODE_CHARS = 6
FREE_ATTEMPTS = 5              # wrong codes from one address before it has to wait
FIRST_WAIT_S = 2.0             # the wait after the free attempts, doubled with each wrong code
MAX_WAIT_S = 300.0
FORGET_AFTER_S = 900.0         # an address that stopped guessing starts afresh


@dataclass(frozen=True)
class Codes:
    access: str | None
    host: str | None

    def problem(self) -> str | None:
        """Why classroom mode cannot let anyone in with these codes, or None."""
        if not self.access:
            return (f"Classroom mode needs an access code, and none is set. The person running "
                    f"the app sets one with the environment variable {ACCESS_ENV} (or "
                    f"`{ACCESS_SECRET}` in .streamlit/secrets.toml) and restarts it.")
        if len(self.access) < MIN_CODE_CHARS or (self.host and len(self.host) < MIN_CODE_CHARS):
            return (f"The classroom codes must have at least {MIN_CODE_CHARS} characters, so "
                    "they cannot be guessed in a few tries: choose longer ones and restart.")
        if self.host and hmac.compare_digest(_digest(self.access), _digest(self.host)):
            return ("The access code and the host code are the same, so every visitor would be "
                    "the host: choose two different codes and restart.")
        return None


def load_codes(environ: Mapping[str, str] | None = None,
               secrets: Mapping[str, Any] | None = None) -> Codes:
    """The codes from the environment, else from the secrets file; blank means not set."""
    environ = os.environ if environ is None else environ
    secrets = secrets or {}

    def one(env: str, key: str) -> str | None:
        value = environ.get(env) or secrets.get(key)
        return str(value).strip() or None if value is not None else None

    return Codes(access=one(ACCESS_ENV, ACCESS_SECRET), host=one(HOST_ENV, HOST_SECRET))


def _digest(code: str) -> bytes:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).digest()


def matches(given: str | None, expected: str | None) -> bool:
    """Constant time in the codes' content and length (both are hashed first)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(_digest(given.strip()), _digest(expected))


@dataclass(frozen=True)
class Decision:
    allowed: bool                 # may use the app (possibly after entering the access code)
    needs_code: bool = False      # must enter the access code first
    message: str | None = None    # why not, or a warning to show while allowed


LOCAL_ONLY = ("This app serves only the computer it runs on. To open it to a room, the person "
              "running it starts it in classroom mode with an access code (see “Serving a "
              "classroom” in the README).")
EXPOSED_WARNING = ("This app is listening on the network without classroom mode: other "
                   "computers are turned away. To let a room use it, restart it with "
                   f"ILE_CLASSROOM=1, an access code ({ACCESS_ENV}) and a host code "
                   f"({HOST_ENV}).")


def decide(client_address: str | None, listen_address: str | None, classroom_on: bool,
           codes: Codes) -> Decision:
    """Whether one browser session may use the app, before any page is drawn."""
    if classroom_on:
        problem = codes.problem()
        if problem:
            return Decision(False, message=problem)
        return Decision(True, needs_code=True)
    if not classroom.is_loopback(client_address):
        return Decision(False, message=LOCAL_ONLY)
    if listen_address is None or not classroom.is_loopback(listen_address):
        return Decision(True, message=EXPOSED_WARNING)
    return Decision(True)


class Attempts:
    """Wrong codes per client address, server-wide: after `FREE_ATTEMPTS`, each further try
    waits twice as long as the one before (up to `MAX_WAIT_S`). Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}     # address -> (count, last time)

    def wait_s(self, address: str | None) -> float:
        """Seconds this address must wait before its next try (0 when it may try now)."""
        with self._lock:
            count, last = self._failures.get(address or "", (0, 0.0))
            now = self._clock()
            if now - last > FORGET_AFTER_S:
                return 0.0
            if count < FREE_ATTEMPTS:
                return 0.0
            wait = min(FIRST_WAIT_S * 2 ** (count - FREE_ATTEMPTS), MAX_WAIT_S)
            return max(last + wait - now, 0.0)

    def failed(self, address: str | None) -> None:
        with self._lock:
            key = address or ""
            count, last = self._failures.get(key, (0, 0.0))
            now = self._clock()
            if now - last > FORGET_AFTER_S:
                count = 0
            self._failures[key] = (count + 1, now)

    def succeeded(self, address: str | None) -> None:
        with self._lock:
            self._failures.pop(address or "", None)


PASS_HOURS = 12.0              # a browser that entered a code is remembered for a school day


class Passes:
    """Browsers that entered a code, so a reload or a new tab does not ask again.

    Keyed by the one-way owner id of the browser's cookie (`lib.access.classroom.owner_id`), which
    only that browser holds; kept in server memory, so a restart asks everyone again.
    Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._until: dict[tuple[str, str], float] = {}

    def grant(self, browser: str | None, what: str) -> None:
        if browser:
            with self._lock:
                self._until[(browser, what)] = self._clock() + PASS_HOURS * 3600

    def holds(self, browser: str | None, what: str) -> bool:
        if not browser:
            return False
        with self._lock:
            return self._until.get((browser, what), 0.0) > self._clock()

    def revoke(self, browser: str | None, what: str) -> None:
        with self._lock:
            self._until.pop((browser or "", what), None)
