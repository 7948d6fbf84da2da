"""Models in worker processes: one long-lived process per loaded model (docs/MEASURING.md, timing rule 8).

Why: the web server's process holds every browser session, its caches and Streamlit itself, so
its memory says nothing about one model, and a model killed for memory would take every session
down with it. A model in its own process has a peak memory that is its own (weights, KV cache,
the rest), and when the system kills it the app says so and carries on.

How: `WorkerModel` starts the process with the *spawn* method (a fresh interpreter: never forked
from a server that runs threads), then talks to it over a pipe. The parent sends a command; the
worker answers with any number of ("progress", ...) / ("status", ...) messages and then exactly
one ("done", value) or ("failed", error). All timing happens inside the worker, on the same
clock and loop as in-process (`lib.measure.engine`), so the pipe adds nothing to a latency: only whole
repetitions cross it (`benchmarks/timing_overhead.py` checks). Stop sets a shared event that the
engine checks between calls and the token streamer between tokens; the parent then waits for
the worker's answer, so the model stays loaded and ready.

`LocalModel` offers the same methods in this process, for backends with nothing to isolate
(the fake backend of the tests). `handle_for(backend, ...)` picks one.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import types
from typing import TYPE_CHECKING, Any, Callable

from lib.core.errors import ExplorerError, RunFailedError, WorkerDiedError

if TYPE_CHECKING:
    from lib.measure.backends.base import Backend
    from lib.models.loaded import LoadedModel
    from lib.core.results import Measurement, Repetition
    from lib.core.spec import RunSpec

TICK_S = 0.25            # how often a waiting parent calls `on_tick` (the page's live clock)
STOP_GRACE_S = 120.0     # after Stop, how long the worker may take to finish its current step

Callback = Callable[..., None]


class ModelHandle:
    """A loaded model and how to measure on it, wherever it lives."""
    loaded: "LoadedModel"          # load time, source, shapes; `model` is None in a worker

    def __init__(self, backend: "Backend") -> None:
        self.backend = backend

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.loaded.key

    @property
    def alive(self) -> bool:
        return True

    def close(self) -> None:
        pass


class LocalModel(ModelHandle):
    """The model in this process (backends that declare `isolate = False`)."""

    def __init__(self, backend: "Backend", model_id: str, device: str, dtype: str,
                 on_status: Callback | None = None) -> None:
        super().__init__(backend)
        self.loaded = backend.load(model_id, device, dtype, on_progress=on_status)
        self._measurers: dict[Any, Any] = {}

    def measure(self, spec: "RunSpec", on_progress: Callback | None = None,
                on_tick: Callback | None = None) -> "Measurement":
        from lib.measure import engine
        return _failed_inside_torch(lambda: engine.measure(self.backend, self.loaded, spec,
                                                           on_progress=on_progress))

    def start(self, spec: "RunSpec", on_progress: Callback | None = None,
              on_tick: Callback | None = None) -> None:
        from lib.measure import engine
        measurer = engine.Measurer(self.backend, self.loaded, spec)
        _failed_inside_torch(lambda: measurer.warm_up(on_progress))
        self._measurers[spec] = measurer

    def repeat(self, spec: "RunSpec", on_tick: Callback | None = None) -> "Repetition":
        return _failed_inside_torch(self._measurers[spec].repeat)

    def finish(self, spec: "RunSpec") -> "Measurement":
        return self._measurers.pop(spec).measurement()

    def forget(self, spec: "RunSpec") -> None:
        self._measurers.pop(spec, None)


class WorkerModel(ModelHandle):
    """The model in its own spawned process; every method blocks until the worker answers."""

    def __init__(self, backend: "Backend", model_id: str, device: str, dtype: str,
                 on_status: Callback | None = None, on_tick: Callback | None = None) -> None:
        super().__init__(backend)
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._stop = context.Event()
        self._lock = threading.Lock()
        self.process = context.Process(target=_worker_main, args=(child_conn, self._stop, backend),
                                       name=f"ile-worker {model_id} {dtype}",
                                       # ended by multiprocessing when the app exits
                                       daemon=True)
        self.what = f"{model_id} ({dtype} on {device})"
        if on_status:
            on_status(f"Starting a worker process for {self.what}…")
        with _bare_main():
            self.process.start()
        child_conn.close()
        try:
            self.loaded = self._call("load", model_id, device, dtype, on_status=on_status,
                                     on_tick=on_tick)
        except BaseException:
            self.close()
            raise

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def measure(self, spec: "RunSpec", on_progress: Callback | None = None,
                on_tick: Callback | None = None) -> "Measurement":
        return self._call("measure", spec, on_progress=on_progress, on_tick=on_tick)

    def start(self, spec: "RunSpec", on_progress: Callback | None = None,
              on_tick: Callback | None = None) -> None:
        self._call("start", spec, on_progress=on_progress, on_tick=on_tick)

    def repeat(self, spec: "RunSpec", on_tick: Callback | None = None) -> "Repetition":
        return self._call("repeat", spec, on_tick=on_tick)

    def finish(self, spec: "RunSpec") -> "Measurement":
        return self._call("finish", spec)

    def forget(self, spec: "RunSpec") -> None:
        if self.alive:
            self._call("forget", spec)

    def close(self) -> None:
        """End the process (its memory goes back to the system at once)."""
        with contextlib.suppress(OSError, ValueError):
            self._conn.send(("close", ()))
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        with contextlib.suppress(OSError):
            self._conn.close()

    # --- the conversation -------------------------------------------------------------------

    def _call(self, command: str, *args: Any, on_status: Callback | None = None,
              on_progress: Callback | None = None, on_tick: Callback | None = None) -> Any:
        with self._lock:
            self._stop.clear()
            try:
                self._conn.send((command, args))
                kind, value = self._answer(on_status, on_progress, on_tick)
            except (EOFError, OSError, BrokenPipeError):
                raise self._died() from None
            except BaseException:
                # Streamlit's Stop (or Ctrl-C) interrupted the wait: stop the worker at its next
                # token and wait for it, so the model stays ready and the pipe stays in step.
                self._interrupt()
                raise
        if kind == "failed":
            raise value
        return value

    def _answer(self, on_status, on_progress, on_tick) -> Any:
        while True:
            if not self._conn.poll(TICK_S):
                if not self.process.is_alive():
                    raise self._died()
                if on_tick:
                    on_tick()
                continue
            kind, payload = self._conn.recv()
            if kind in ("done", "failed"):
                return kind, payload
            if kind == "progress" and on_progress:
                on_progress(*payload)
            elif kind == "status" and on_status:
                on_status(payload)

    def _interrupt(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            while time.monotonic() < deadline and self.process.is_alive():
                if self._conn.poll(TICK_S):
                    kind, _ = self._conn.recv()
                    if kind in ("done", "failed"):
                        return
        except (EOFError, OSError):
            pass
        self.process.kill()           # it did not stop in time: better gone than out of step

    def _died(self) -> WorkerDiedError:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0 and -code == signal.SIGKILL:
            why = ("the system killed it (signal 9), almost always because memory ran out. "
                   "Try a smaller batch, a shorter prompt or output, or a smaller model")
        elif code is not None and code < 0:
            why = f"it was ended by signal {-code}"
        else:
            why = f"it crashed (exit code {code})"
        return WorkerDiedError(
            f"The process running {self.what} stopped: {why}. This run is lost; the app, other "
            "sessions and your saved results are fine, and the next run starts a fresh process.")


_START_LOCK = threading.Lock()


@contextlib.contextmanager
def _bare_main():
    """Start workers without re-running the parent's main module: a spawned child normally
    imports it first (the Streamlit launcher, pytest, a benchmark script), which costs seconds
    and breaks scripts without an `if __name__ == "__main__"` guard. The worker needs only lib."""
    with _START_LOCK:
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            sys.modules["__main__"] = main


def handle_for(backend: "Backend", model_id: str, device: str, dtype: str,
               on_status: Callback | None = None, on_tick: Callback | None = None) -> ModelHandle:
    """The model in a worker process (`on_tick` called while it loads, so a page's clock
    moves), or in this one for a backend with nothing to isolate."""
    if backend.isolate:
        return WorkerModel(backend, model_id, device, dtype, on_status=on_status, on_tick=on_tick)
    return LocalModel(backend, model_id, device, dtype, on_status=on_status)


# --- inside the worker process ---------------------------------------------------------------

def _worker_main(conn: Any, stop: Any, backend: "Backend") -> None:
    """The worker process: serve, then end at once. An interpreter's normal shutdown with
    torch and a model loaded takes about a second, which every closed worker made its caller
    wait; nothing in the worker needs it (no files of its own, results already sent)."""
    from multiprocessing import util

    serve(conn, stop, backend)
    util._exit_function()           # what multiprocessing runs as a child ends: its finalizers
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def serve(conn: Any, stop: Any, backend: "Backend") -> None:
    """The worker's main loop: one command at a time until "close" or the parent is gone."""
    _die_with_parent()
    state: dict[str, Any] = {"measurers": {}}

    def progress(*event: Any) -> None:
        conn.send(("progress", event))

    def status(message: str) -> None:
        conn.send(("status", message))

    while True:
        try:
            command, args = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if command == "close":
            return
        try:
            value = _failed_inside_torch(
                lambda: _run(command, args, backend, state, stop, progress, status))
            conn.send(("done", value))
        except ExplorerError as exc:
            conn.send(("failed", exc))
        except Exception as exc:  # a bug: the parent raises it with the worker's traceback
            conn.send(("failed", RuntimeError(
                f"{type(exc).__name__} in the worker process: {exc}\n{traceback.format_exc()}")))


def _run(command: str, args: tuple, backend: "Backend", state: dict, stop: Any,
         progress: Callback, status: Callback) -> Any:
    from lib.measure import engine

    if command == "load":
        model_id, device, dtype = args
        loaded = backend.load(model_id, device, dtype, on_progress=status)
        state["loaded"] = loaded
        return _portable(loaded)
    loaded, measurers = state["loaded"], state["measurers"]
    if command == "measure":
        return engine.measure(backend, loaded, args[0], on_progress=progress,
                              should_stop=stop.is_set)
    if command == "start":
        measurer = engine.Measurer(backend, loaded, args[0], should_stop=stop.is_set)
        measurer.warm_up(progress)
        measurers[args[0]] = measurer
        return None
    if command == "repeat":
        return measurers[args[0]].repeat()
    if command == "finish":
        return measurers.pop(args[0]).measurement()
    if command == "forget":
        measurers.pop(args[0], None)
        return None
    raise ValueError(f"unknown worker command {command!r}")


def _portable(loaded: "LoadedModel") -> "LoadedModel":
    """What the parent gets to know about the loaded model: everything but the model itself."""
    import dataclasses
    return dataclasses.replace(loaded, model=None, tokenizer=None)


def _failed_inside_torch(call: Callable[[], Any]) -> Any:
    """PyTorch reports out-of-memory and kernel failures as RuntimeError: the model and the app
    are still fine, only this run is lost, and the person gets a message, not a traceback."""
    try:
        return call()
    except (RuntimeError, MemoryError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RunFailedError(
            f"The run failed inside PyTorch ({type(exc).__name__}: {first_line}). Nothing "
            "else was affected: try a smaller batch, a shorter prompt or another dtype, "
            "and run again.") from exc


def _die_with_parent() -> None:
    """End the worker when the app's process is gone, however it died (even kill -9, which
    skips multiprocessing's own clean-up). Linux's PR_SET_PDEATHSIG would fire when the
    *thread* that started the worker ends, and Streamlit runs each page in a short-lived
    thread, so a watchdog thread checks the parent instead."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)
    threading.Thread(target=watch, name="ile-worker-watchdog", daemon=True).start()
