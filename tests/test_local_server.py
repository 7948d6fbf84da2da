"""lib.serving.local: the memory guard and refusals come before any process starts, a child that
dies early is a clear message, stop() always ends the child, and (slow lane) a real
`transformers serve` answers streamed completions on 127.0.0.1 only and never outlives the
process that started it, even when that process is killed with SIGKILL."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from lib.estimate import memory
from lib.core.errors import InvalidSpecError, MemoryGuardError, UnsupportedError
from lib.serving import local, served_model
from lib.serving.local import LocalServer, LocalServerError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = "smollm2-135m-instruct"
GONE_WITHIN_S = 10.0


@pytest.fixture
def no_process(monkeypatch):
    """Any attempt to start a process or prepare a folder fails the test."""
    def refuse(*args, **kwargs):
        pytest.fail("a process was started (or a folder prepared) before the refusal")
    monkeypatch.setattr(subprocess, "Popen", refuse)
    monkeypatch.setattr(local, "serve_folder", refuse)


# --- fast: refusals before anything starts -----------------------------------------------------

def test_the_memory_guard_refuses_before_any_process_starts(no_process, monkeypatch):
    monkeypatch.setattr(memory, "free_bytes", lambda device: 200 * 2**20)
    with pytest.raises(MemoryGuardError, match="does NOT fit"):
        LocalServer(DEFAULT, say=lambda message: None).start()


def test_the_refusal_says_how_many_concurrent_requests_would_fit(no_process, monkeypatch):
    from lib.models.shapes import shapes

    def need(concurrency):
        return memory.estimate(shapes(DEFAULT), "float32", concurrency, 1024, 256,
                               attention="sdpa").total_bytes
    # Room for exactly 3 concurrent requests, not 4.
    monkeypatch.setattr(memory, "free_bytes", lambda device: (need(3) + need(4)) // 2)
    server = LocalServer(DEFAULT, max_concurrency=64, prompt_tokens=1024, new_tokens=256)
    with pytest.raises(MemoryGuardError, match="At most 3 concurrent requests fit"):
        server.start()


def test_an_encoder_is_refused(no_process):
    with pytest.raises(UnsupportedError, match="encoder"):
        LocalServer("all-minilm-l6-v2").start()


def test_an_estimate_only_model_is_refused(no_process):
    with pytest.raises(UnsupportedError, match="estimation only"):
        LocalServer("deepseek-r1").start()


def test_int8_is_refused_with_the_dtypes_that_work():
    with pytest.raises(InvalidSpecError, match="float32, bfloat16, float16"):
        LocalServer(DEFAULT, dtype="int8")


def test_a_folder_without_a_tokenizer_is_refused(tmp_path):
    with pytest.raises(Exception, match="no tokenizer"):
        served_model.with_tokenizer(tmp_path, "yours")


def test_free_port_is_a_bindable_loopback_port():
    port = local.free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", port))


def test_continuous_batching_gets_a_kv_cache_sized_for_the_load(monkeypatch, tmp_path):
    """Left alone, continuous batching takes 60% of the machine's memory on CPU."""
    seen = {}

    class Captured(Exception):
        pass

    def capture(command, **kwargs):
        seen["command"], seen["kwargs"] = command, kwargs
        raise Captured
    monkeypatch.setattr(subprocess, "Popen", capture)
    server = LocalServer(DEFAULT, continuous_batching=True, max_concurrency=4,
                         prompt_tokens=300, new_tokens=100)
    server.folder = tmp_path
    with pytest.raises(Captured):
        server._spawn(local.free_port())
    command = seen["command"]
    assert command[command.index("--cb-num-blocks") + 1] == str(7 + 4)   # 1,600 tokens / 256
    assert command[command.index("--cb-max-batch-tokens") + 1] == "1200"
    assert "--host" not in command                # the child always binds 127.0.0.1
    assert seen["kwargs"]["start_new_session"] is True
    assert seen["kwargs"]["env"]["HF_HUB_OFFLINE"] == "1"
    assert server._pipe_write is None             # a failed start leaks no descriptor


def test_a_child_that_ends_at_once_is_a_clear_error_with_its_log(monkeypatch, tmp_path):
    monkeypatch.setattr(local, "check_memory", lambda *args: None)
    monkeypatch.setattr(local, "serve_folder", lambda model_id, say: tmp_path / "missing")
    server = LocalServer(DEFAULT, say=lambda message: None)
    started = time.perf_counter()
    with pytest.raises(LocalServerError) as refusal:
        server.start(timeout_s=60)
    assert time.perf_counter() - started < 30
    assert "exit code 2" in str(refusal.value)
    assert "no model folder at" in str(refusal.value)        # the log's tail
    assert not server.running and server.pid is None
    assert server.log_path.exists()               # kept: the error names it


@pytest.mark.slow
def test_stop_is_idempotent_and_kills_a_child_that_ignores_sigterm(monkeypatch):
    monkeypatch.setattr(local, "STOP_GRACE_S", 0.5)
    server = LocalServer(DEFAULT)
    server.stop()                                 # never started: nothing to do
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, start_new_session=True)
    assert stubborn.stdout.readline().strip() == b"ready"
    server._process = stubborn
    server.stop()
    assert stubborn.poll() == -signal.SIGKILL
    server.stop()
    server.stop()


def test_the_endpoint_needs_a_start_and_the_description_is_plain_words(tmp_path):
    server = LocalServer(DEFAULT, dtype="bfloat16", continuous_batching=True)
    with pytest.raises(LocalServerError, match="start"):
        server.endpoint
    server.port, server.folder = 8123, tmp_path
    assert server.endpoint.base_url == "http://127.0.0.1:8123/v1"
    assert server.endpoint.model == str(tmp_path)
    assert server.endpoint.fixed_length == "transformers"
    assert server.description == (
        f"transformers serve {local.transformers_version()}, SmolLM2-135M-Instruct, bfloat16, "
        "continuous batching on, on this computer (127.0.0.1:8123)")


# --- slow: a real transformers serve -----------------------------------------------------------

def _completion(endpoint, tokens: int = 5) -> list[dict]:
    """One streamed completion of exactly `tokens` tokens; its SSE events, parsed."""
    body = json.dumps({"model": endpoint.model, "prompt": "The capital of France is",
                       "stream": True, "generation_config": json.dumps(
                           {"max_new_tokens": tokens, "min_new_tokens": tokens,
                            "do_sample": False})}).encode()
    request = urllib.request.Request(f"{endpoint.base_url}/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with local._DIRECT.open(request, timeout=60) as answer:
        lines = answer.read().decode().splitlines()
    return [json.loads(line[len("data: "):]) for line in lines
            if line.startswith("data: ") and line != "data: [DONE]"]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


def _gone(pid: int, port: int) -> bool:
    deadline = time.monotonic() + GONE_WITHIN_S
    while time.monotonic() < deadline:
        if _ended(pid) and _refused(port):
            return True
        time.sleep(0.2)
    return False


def _ended(pid: int) -> bool:
    """Exited: gone, or a zombie its new parent (init, a container's PID 1) has yet to reap."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class _Impostor(http.server.BaseHTTPRequestHandler):
    """Another program on the port: it even answers /health, but it is not our server."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_a_real_server_answers_on_loopback_only_and_stop_frees_its_port(monkeypatch):
    """One real start (they take seconds each) for the whole life of a server: another program
    takes the first port it picks before the child binds it (it retries on another), it is
    started from a thread that then ends, answers on 127.0.0.1 only, and stop() frees it."""
    impostor = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    taken = impostor.server_address[1]
    ports = iter([taken])
    real_free_port = local.free_port
    monkeypatch.setattr(local, "free_port", lambda: next(ports, None) or real_free_port())
    try:
        with LocalServer(DEFAULT, max_concurrency=2, prompt_tokens=64, new_tokens=16,
                         say=lambda message: None) as server:
            # Started from a thread that then ends, as Streamlit does: the server stays up.
            starter = threading.Thread(target=server.start)
            starter.start()
            starter.join()
            time.sleep(1.0)
            assert server.running
            assert server.port != taken
            pid, port = server.pid, server.port
            print(f"started in {server.started_in_s:.1f} s, warmed in {server.warmed_in_s:.2f} s")
            with local._DIRECT.open(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
                assert json.loads(answer.read()) == {"status": "ok"}
            events = _completion(server.endpoint, tokens=5)
            assert events[-1]["usage"]["completion_tokens"] == 5
            assert "".join(e["choices"][0].get("text", "") for e in events)
            listening = [c for c in psutil.Process(pid).net_connections(kind="inet")
                         if c.status == psutil.CONN_LISTEN]
            assert {(c.laddr.ip, c.laddr.port) for c in listening} == {("127.0.0.1", port)}
            assert local.listening_addresses(pid) == {("127.0.0.1", port)}
            log_path = server.log_path
    finally:
        impostor.shutdown()
        impostor.server_close()
    assert not psutil.pid_exists(pid)
    assert _refused(port)
    assert not log_path.exists()
    server.stop()                                 # again: nothing happens


@pytest.mark.slow
def test_the_server_dies_with_the_process_that_started_it(tmp_path):
    """Two parents, each starting a server, side by side (the starts overlap): one is killed
    with SIGKILL, the other exits normally (atexit); neither server outlives its parent."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from lib.serving.local import LocalServer
        server = LocalServer({DEFAULT!r}, say=lambda message: None).start()
        print(server.pid, server.port, flush=True)
        sys.stdin.readline()          # a line: exit normally (atexit); else killed meanwhile
    """))
    parents = {how: subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
               for how in ("killed with SIGKILL", "exits normally")}
    try:
        servers = {how: tuple(map(int, parent.stdout.readline().split()))
                   for how, parent in parents.items()}
        for pid, port in servers.values():
            assert psutil.pid_exists(pid) and not _refused(port)
        for how, parent in parents.items():
            ended = time.monotonic()
            if how == "killed with SIGKILL":
                parent.send_signal(signal.SIGKILL)
            else:
                parent.stdin.write("exit\n")
                parent.stdin.flush()
            parent.wait(timeout=15)
            assert _gone(*servers[how]), f"the server outlived its parent, {how}"
            print(f"server gone {time.monotonic() - ended:.2f} s after its parent was {how}")
    finally:
        for parent in parents.values():
            parent.kill()
            parent.wait()


@pytest.mark.slow
def test_continuous_batching_answers_on_cpu():
    with LocalServer(DEFAULT, continuous_batching=True, max_concurrency=2, prompt_tokens=32,
                     new_tokens=8, say=lambda message: None) as server:
        server.start()
        events = _completion(server.endpoint, tokens=6)
        assert events[-1]["usage"]["completion_tokens"] == 6


@pytest.mark.slow
def test_a_random_weight_preset_is_saved_once_and_served():
    folder = served_model.serve_folder("gpt2", say=lambda message: None)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= \
        {path.name for path in folder.iterdir()}
    assert served_model.serve_folder("gpt2", say=lambda message: None) == folder
    with LocalServer("gpt2", say=lambda message: None) as server:
        server.start()
        assert _completion(server.endpoint, tokens=4)[-1]["usage"]["completion_tokens"] == 4
