"""A scripted OpenAI-compatible server for tests: it streams what a test declares, when declared.

`ScriptedServer(replies, ...)` is a context manager serving on 127.0.0.1 (a free port) in a
thread. Each POST takes the next `Reply` (the last one repeats): its status, a delay before the
headers, the content chunks as (delay_s, text, tokens), then a usage report, a mid-stream error,
a hang (until the server stops) or an abrupt close; or, as a hostile server, `raw_events` sent
as they are (with the request's Authorization header where they say so). Like every
OpenAI-compatible server, it sends no more chunks than the request's max_tokens allows.
`fields` mimics how servers treat the fixed-length fields: "vllm" takes them all;
"transformers" answers 422 "Unexpected fields in the request" for vLLM's (like `transformers
serve`); "plain" refuses both kinds with 400.
Every request's path, headers and JSON body are kept in `requests`, so tests assert what was
sent. GET /v1/models lists `models`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VLLM_FIELDS = {"min_tokens", "ignore_eos"}
TRANSFORMERS_FIELDS = {"generation_config"}


@dataclass
class Reply:
    chunks: list[tuple[float, str, int]] = field(default_factory=list)  # (delay_s, text, tokens)
    status: int = 200
    headers_delay_s: float = 0.0
    body: str = ""                        # for an error status
    usage: bool = True                    # a final usage report (sum of the chunks' tokens)
    finish_reason: str = "length"         # "stop" for an early end
    error_after: int | None = None        # a `data: {"error": ...}` after this many chunks
    hang: bool = False                    # after the chunks, send nothing until the server stops
    abort: bool = False                   # after the chunks, close without [DONE]
    chunked: bool = True                  # HTTP chunked encoding (uvicorn) or close-delimited
    split_events: bool = False            # each event written in two pieces, 10 ms apart
    keepalive: bool = False               # an SSE comment before each event
    headers: dict[str, str] = field(default_factory=dict)
    echo_auth: bool = False               # put the Authorization header in the error body
    # A hostile server: these data fields sent as they are, then [DONE]; "{auth}" in one becomes
    # the request's Authorization header, "{auth_json}" the same as a JSON string's inside.
    raw_events: list[str] | None = None


class ScriptedServer:
    def __init__(self, replies: list[Reply] | Reply | None = None, *, fields: str = "vllm",
                 models: list[str] | None = None, api: str = "completions") -> None:
        self.replies = [replies] if isinstance(replies, Reply) else list(replies or [Reply()])
        self.fields, self.models, self.api = fields, models or ["tiny"], api
        self.requests: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "ScriptedServer":
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def next_reply(self, body: dict) -> Reply:
        with self._lock:
            count = len([r for r in self.requests if r["method"] == "POST"])
        refused = self.refused_fields(body)
        if refused:
            status = 422 if self.fields == "transformers" else 400
            return Reply(status=status, body=json.dumps(
                {"detail": f"Unexpected fields in the request: {refused}"}))
        return self.replies[min(count - 1, len(self.replies) - 1)]

    def refused_fields(self, body: dict) -> set[str]:
        sent = set(body)
        if self.fields == "vllm":
            return set()
        if self.fields == "transformers":
            return sent & VLLM_FIELDS
        return sent & (VLLM_FIELDS | TRANSFORMERS_FIELDS)


def _handler_for(server: ScriptedServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self._keep(None)
            if self.path.rstrip("/") != "/v1/models":
                return self._plain(404, '{"detail": "Not Found"}')
            listing = {"object": "list", "data": [{"id": m, "object": "model"}
                                                  for m in server.models]}
            self._plain(200, json.dumps(listing))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.loads(raw or b"{}")
            self._keep(body)
            reply = server.next_reply(body)
            time.sleep(reply.headers_delay_s)
            if reply.status >= 400:
                text = reply.body
                if reply.echo_auth:
                    text += " got " + self.headers.get("Authorization", "")
                return self._plain(reply.status, text)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            chat = body.get("messages") is not None
            try:
                self._stream(reply, chat, body)
            except (BrokenPipeError, ConnectionResetError):
                pass                                 # the client hung up: that is its right
            self.close_connection = True

        def _stream(self, reply: Reply, chat: bool, body: dict) -> None:
            if reply.raw_events is not None:
                auth = self.headers.get("Authorization", "")
                for data in reply.raw_events:
                    data = data.replace("{auth}", auth).replace(
                        "{auth_json}", json.dumps(auth)[1:-1])
                    self._write(b"data: " + data.encode() + b"\n\n", reply)
                self._write(b"data: [DONE]\n\n", reply)
                if reply.chunked:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                return
            chunks = _within(reply.chunks, body.get("max_tokens"))
            for number, (delay_s, text, _) in enumerate(chunks):
                if reply.error_after == number:
                    return self._event({"error": {"message": "the engine ran out of memory"}},
                                       reply, done=True)
                time.sleep(delay_s)
                choice = {"index": 0, "delta": {"content": text}} if chat \
                    else {"index": 0, "text": text}
                self._event({"choices": [dict(choice, finish_reason=None)]}, reply)
            if reply.hang:
                server.stopping.wait()
                return
            if reply.abort:
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            final = {"index": 0, "finish_reason": reply.finish_reason}
            final.update({"delta": {}} if chat else {"text": ""})
            self._event({"choices": [final]}, reply)
            if reply.usage:
                tokens = sum(chunk[2] for chunk in chunks)
                self._event({"choices": [], "usage": {"prompt_tokens": 7,
                                                      "completion_tokens": tokens}}, reply)
            self._write(b"data: [DONE]\n\n", reply)
            if reply.chunked:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        def _event(self, payload: dict, reply: Reply, done: bool = False) -> None:
            if reply.keepalive:
                self._write(b": keep-alive\n\n", reply)
            self._write(b"data: " + json.dumps(payload).encode() + b"\n\n", reply)
            if done:
                self._write(b"data: [DONE]\n\n", reply)
                if reply.chunked:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()

        def _write(self, data: bytes, reply: Reply) -> None:
            pieces = [data[:len(data) // 2], data[len(data) // 2:]] if reply.split_events \
                else [data]
            for number, piece in enumerate(pieces):
                if number:
                    time.sleep(0.01)
                if reply.chunked:
                    piece = b"%x\r\n%s\r\n" % (len(piece), piece)
                self.wfile.write(piece)
                self.wfile.flush()

        def _plain(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _keep(self, body: dict | None) -> None:
            with server._lock:
                server.requests.append({"method": self.command, "path": self.path,
                                        "headers": dict(self.headers), "body": body})

    return Handler


def _within(chunks: list[tuple[float, str, int]], max_tokens) -> list[tuple[float, str, int]]:
    """The chunks a server keeping to max_tokens sends: those that fit, as every
    OpenAI-compatible server does (a hostile one sends `raw_events`)."""
    if not isinstance(max_tokens, int):
        return chunks
    kept, total = [], 0
    for chunk in chunks:
        if total + chunk[2] > max_tokens:
            break
        kept.append(chunk)
        total += chunk[2]
    return kept


def closed_port_url() -> str:
    """An address where nothing listens (a port just released)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
