"""`transformers serve` on this computer: a catalog model served on a free 127.0.0.1 port by a
child process, for the load generator to measure like any OpenAI-compatible server.

What it promises:
- nothing starts that cannot fit: `lib.serving.served_model.check_memory` refuses with the
  app's usual explanation before any file is written or process started;
- it listens on 127.0.0.1 only (the child has no host option at all);
- no orphans: the child (`lib.serving.child`) reads EOF on a pipe the moment this process ends,
  however it ends (SIGKILL included), and exits; `stop()` ends its whole process group (SIGTERM,
  then SIGKILL); an `atexit` hook stops every server still running at normal exit;
- load time is never a request's latency: `start()` waits for `/health`, then warms the model
  with one tiny request, and reports both times (`started_in_s`, `warmed_in_s`) on their own;
- the child's output goes to a log file (a pipe nobody reads would fill and block it), and a
  child that dies early is reported with the last lines of that log.

What the server loads is `lib.serving.served_model.serve_folder`'s. Nothing here imports
Streamlit or torch at import time.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from lib.core.errors import ExplorerError, InvalidSpecError, StoppedError
from lib.serving.records import Endpoint
from lib.serving.served_model import check_memory, display_name, servable_entry, serve_folder

Say = Callable[[str], None]

HOST = "127.0.0.1"
SERVE_DTYPES = ("float32", "bfloat16", "float16")
START_TIMEOUT_S = 300.0         # model load (random presets: seconds; 8B in float32: minutes)
WARM_TIMEOUT_S = 120.0
HEALTH_POLL_S = 0.25
STOP_GRACE_S = 5.0              # after SIGTERM, before SIGKILL
LOG_TAIL_LINES = 15
PORT_ATTEMPTS = 3               # a port taken between choosing and binding: try another
# Continuous batching's paged KV cache, sized for the guarded load (transformers' own default:
# 256-token pages and 60% of the machine's memory on CPU).
CB_PAGE_TOKENS = 256
CB_MAX_BATCH_TOKENS = 8192
REPO_ROOT = Path(__file__).resolve().parents[2]
# Requests to our own child go straight to it, never through an HTTP(S)_PROXY from the
# environment (which would not reach 127.0.0.1, or would see the traffic).
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LocalServerError(ExplorerError):
    """The local server could not start or answer; the message holds its log's last lines."""


# --- ports and the child process ---------------------------------------------------------------

def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (the child may still lose it to another
    process before binding; `start` then tries another)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def transformers_version() -> str:
    return importlib.metadata.version("transformers")


_RUNNING: set["LocalServer"] = set()
_RUNNING_LOCK = threading.Lock()


def stop_all() -> None:
    """Stop every server this process started (registered with `atexit`)."""
    with _RUNNING_LOCK:
        servers = list(_RUNNING)
    for server in servers:
        server.stop()


atexit.register(stop_all)


class LocalServer:
    """`transformers serve` with one model, in a child process on a free 127.0.0.1 port.

        with LocalServer("smollm2-135m-instruct", max_concurrency=4, prompt_tokens=128,
                         new_tokens=64) as server:
            server.start()
            run_load(server.endpoint, ...)
    """

    def __init__(self, model_id: str, dtype: str = "float32", continuous_batching: bool = False,
                 max_concurrency: int = 1, prompt_tokens: int = 128, new_tokens: int = 64,
                 say: Say = print):
        if dtype not in SERVE_DTYPES:
            raise InvalidSpecError(
                f"transformers serve loads {', '.join(SERVE_DTYPES)}; {dtype!r} is not one of "
                "them (int8 is this app's own dynamic quantization). Pick one of those.")
        if max_concurrency < 1 or prompt_tokens < 1 or new_tokens < 1:
            raise InvalidSpecError("Concurrency, prompt and output tokens must each be at least "
                                   "1.")
        self.model_id = model_id
        self.dtype = dtype
        self.continuous_batching = continuous_batching
        self.max_concurrency = max_concurrency
        self.prompt_tokens = prompt_tokens
        self.new_tokens = new_tokens
        self.say = say
        self.port: int | None = None
        self.folder: Path | None = None
        self.log_path: Path | None = None
        self.started_in_s: float | None = None     # process start to /health answering
        self.warmed_in_s: float | None = None      # the one warm-up request after that
        self._process: subprocess.Popen | None = None
        self._pipe_write: int | None = None
        self._lock = threading.Lock()

    # -- lifecycle --

    def start(self, timeout_s: float = START_TIMEOUT_S) -> "LocalServer":
        """Guard memory, prepare the folder, start the child, wait for health, warm up."""
        if self.running:
            return self
        entry = servable_entry(self.model_id)
        entry.check_context(self.prompt_tokens, self.new_tokens)
        check_memory(self.model_id, self.dtype, self.max_concurrency, self.prompt_tokens,
                     self.new_tokens)
        self.folder = serve_folder(self.model_id, self.say)
        self.say(f"Starting transformers serve with {entry.display_name} ({self.dtype})…")
        began = time.perf_counter()
        for attempt in range(PORT_ATTEMPTS):
            self._spawn(free_port())
            try:
                self._wait_healthy(began + timeout_s)
                break
            except _PortTaken:
                self.stop()
                if attempt == PORT_ATTEMPTS - 1:
                    raise LocalServerError(
                        f"The local server could not bind a free port {PORT_ATTEMPTS} times in "
                        "a row (other programs took each one first). Try again.") from None
            except BaseException:
                # Interrupted while waiting (Ctrl-C, a Streamlit rerun): no server left behind.
                self.stop()
                raise
        self.started_in_s = time.perf_counter() - began
        self.say(f"Server up in {self.started_in_s:.1f} s; warming the model with one request…")
        warmed = time.perf_counter()
        try:
            self._warm()
        except LocalServerError:
            self._stop(keep_log=True)
            raise
        except BaseException:
            self.stop()
            raise
        self.warmed_in_s = time.perf_counter() - warmed
        return self

    def _spawn(self, port: int) -> None:
        from lib.core.paths import runtime_dir
        from lib.core.spec import default_threads

        self.port = port
        log_fd, log_name = tempfile.mkstemp(prefix=f"transformers-serve-{port}-", suffix=".log",
                                            dir=runtime_dir())
        self.log_path = Path(log_name)
        read_end, self._pipe_write = os.pipe()
        command = [sys.executable, "-m", "lib.serving.child", "--model", str(self.folder),
                   "--port", str(port), "--dtype", self.dtype,
                   "--threads", str(default_threads())]
        if self.continuous_batching:
            tokens = self.max_concurrency * (self.prompt_tokens + self.new_tokens)
            command += ["--continuous-batching", "--cb-num-blocks",
                        str(math.ceil(tokens / CB_PAGE_TOKENS) + self.max_concurrency),
                        "--cb-max-batch-tokens",
                        str(min(CB_MAX_BATCH_TOKENS,
                                max(CB_PAGE_TOKENS, self.max_concurrency * self.prompt_tokens)))]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        try:
            self._process = subprocess.Popen(
                command, stdin=read_end, stdout=log_fd, stderr=subprocess.STDOUT, env=env,
                cwd=REPO_ROOT, start_new_session=True)
        except BaseException:
            os.close(self._pipe_write)
            self._pipe_write = None
            raise
        finally:
            os.close(read_end)
            os.close(log_fd)
        with _RUNNING_LOCK:
            _RUNNING.add(self)

    def _wait_healthy(self, deadline: float) -> None:
        url = f"http://{HOST}:{self.port}/health"
        while True:
            process = self._process
            if process is None:
                raise StoppedError("The local server was stopped while it was starting.")
            code = process.poll()
            if code is not None:
                tail = self.log_tail()
                if re.search(r"address already in use|errno 98", tail, re.IGNORECASE):
                    raise _PortTaken()
                self._stop(keep_log=True)
                raise LocalServerError(
                    f"The local server ended while starting (exit code {code}). Last lines of "
                    f"its log ({self.log_path}):\n{tail}")
            try:
                with _DIRECT.open(url, timeout=2.0) as answer:
                    # Only our child's answer counts: another program that took the port
                    # first may answer /health too (our child then ends: _PortTaken).
                    if answer.status == 200 and \
                            listening_addresses(process.pid) == {(HOST, self.port)}:
                        return
            except (urllib.error.URLError, OSError):
                pass                        # not listening yet
            if time.perf_counter() > deadline:
                tail = self.log_tail()
                self._stop(keep_log=True)
                raise LocalServerError(
                    f"The local server did not answer /health in time. Last lines of its log "
                    f"({self.log_path}):\n{tail}")
            time.sleep(HEALTH_POLL_S)

    def _warm(self) -> None:
        """One tiny streamed completion, read to its end: loading, the first kernels and
        continuous batching's own start-up are paid here, not by the first measured request."""
        body = json.dumps({"model": str(self.folder), "prompt": "Hello", "stream": True,
                           "max_tokens": 2}).encode()
        request = urllib.request.Request(f"{self.base_url}/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with _DIRECT.open(request, timeout=WARM_TIMEOUT_S) as answer:
                answer.read()
        except (urllib.error.URLError, OSError) as exc:
            if self._process is None:
                raise StoppedError("The local server was stopped while it was starting.") \
                    from None
            raise LocalServerError(
                f"The local server started but its warm-up request failed ({exc}). Last lines "
                f"of its log ({self.log_path}):\n{self.log_tail()}") from exc

    def stop(self) -> None:
        """End the child's whole process group: close the pipe (the child exits on EOF),
        SIGTERM, then SIGKILL after `STOP_GRACE_S`. Safe to call any number of times. Its log
        is deleted, except after a failed start (the error names it)."""
        self._stop(keep_log=False)

    def _stop(self, keep_log: bool) -> None:
        with self._lock:
            process, self._process = self._process, None
            if self._pipe_write is not None:
                os.close(self._pipe_write)
                self._pipe_write = None
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        if process is None:
            return
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                pass
        # The child may have left helpers in its group; none of them outlives it.
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
        if not keep_log and self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- what the load generator and the page need --

    @property
    def running(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def endpoint(self) -> Endpoint:
        if self.port is None or self.folder is None:
            raise LocalServerError("The local server has not been started: call start() first.")
        # The server is pinned to the folder: requests must name it exactly as it was given.
        return Endpoint(base_url=self.base_url, model=str(self.folder), api="completions",
                        fixed_length="transformers")

    @property
    def description(self) -> str:
        where = f"on this computer ({HOST}:{self.port})" if self.port else "on this computer"
        return (f"transformers serve {transformers_version()}, {display_name(self.model_id)}, "
                f"{self.dtype}, continuous batching {'on' if self.continuous_batching else 'off'}"
                f", {where}")

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None:
            return ""
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace")
            return "\n".join(text.rstrip().splitlines()[-lines:])
        return ""


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs process `pid` listens on (TCP)."""
    import psutil

    try:
        connections = psutil.Process(pid).net_connections(kind="inet")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return set()
    return {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}


class _PortTaken(Exception):
    """The child lost its port to another process before binding it."""


def _signal_group(pid: int, signum: int) -> None:
    # start_new_session: the group id is the child's pid. Gone already: nothing to do; not
    # ours (a reused id): never touched.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
