"""HTTP/1.1 over a plain socket, and server-sent events, read so that nothing waits long.

`http.client`'s reads can't be resumed after a socket timeout; here every read waits at most
`POLL_S`, so a silent stream notices Cancel and the overall deadline within that time
(`Interrupted` says which). `read_head` gives the status and headers, `body` the body's bytes as
they arrive (chunked encoding undone), each with its arrival time, and `events` the data fields
of the server-sent events those bytes carry. Only the standard library is used.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Callable, Iterator
from urllib.parse import urlsplit

from lib.serving.records import CANCELLED, FAILED

POLL_S = 0.1                  # longest wait for one read: how late Cancel and the deadline act
EXCERPT_CHARS = 200           # of what a server sent, in a reason
MAX_ERROR_BODY_BYTES = 64_000
MAX_HEAD_BYTES = 64_000       # status line and headers
MAX_EVENT_BYTES = 1_000_000   # one server-sent event, or one chunk-size line: "reply too large"

Clock = Callable[[], float]


class BadReply(ConnectionError):
    """The server's bytes are not a reply this client can read (too large, not HTTP, cut inside
    an event): the request fails with this message alone, in plain words."""


class Interrupted(Exception):
    """The deadline passed or Cancel was pressed while waiting for bytes."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class Connection:
    """One HTTP/1.1 exchange on a socket, read in slices of at most POLL_S."""

    def __init__(self, url: str, deadline: float, cancel: threading.Event | None,
                 timeout_s: float) -> None:
        parts = urlsplit(url)
        self.deadline, self.cancel, self.timeout_s = deadline, cancel, timeout_s
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.netloc, self.path = parts.netloc, parts.path or "/"
        self.https = parts.scheme == "https"
        self.sock: socket.socket | None = None
        self.last_byte_s: float | None = None

    def open(self) -> None:
        self.sock = socket.create_connection((self.host, self.port),
                                             timeout=max(self._left(), 0.001))
        if self.https:
            self.sock = ssl.create_default_context().wrap_socket(self.sock,
                                                                 server_hostname=self.host)
        self.sock.settimeout(POLL_S)

    def send(self, method: str, headers: dict[str, str], body: bytes) -> None:
        lines = [f"{method} {self.path} HTTP/1.1", f"Host: {self.netloc}",
                 "Connection: close", "Accept-Encoding: identity",
                 f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def receive(self, clock: Clock) -> bytes:
        """The next bytes (b"" when the server closed), waiting POLL_S at a time."""
        while True:
            if self.cancel is not None and self.cancel.is_set():
                raise Interrupted(CANCELLED, "cancelled while the answer was streaming")
            if self._left() <= 0:
                raise Interrupted(FAILED, f"no complete answer within the {self.timeout_s:g} s "
                                       "timeout: the server is overloaded or stuck")
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            self.last_byte_s = clock()
            return data

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def _left(self) -> float:
        return self.deadline - time.monotonic()


def read_head(connection: Connection, clock: Clock) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and the body bytes that came with them."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD_BYTES:
            raise BadReply(f"reply too large: headers over {MAX_HEAD_BYTES:,} bytes")
        data = connection.receive(clock)
        if not data:
            raise ConnectionError("the server closed the connection without an answer")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        raise BadReply(f"the server's answer is not HTTP: {excerpt(status_line)}") \
            from None
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def body(connection: Connection, headers: dict[str, str], rest: bytes,
          clock: Clock) -> Iterator[tuple[bytes, float]]:
    """The body's bytes as they arrive, with their arrival time; chunked encoding undone."""
    arrived = connection.last_byte_s
    if "chunked" not in headers.get("transfer-encoding", "").lower():
        length = int(headers["content-length"]) if "content-length" in headers else None
        received = 0
        data = rest
        while True:
            if data:
                received += len(data)
                yield data, arrived
            if length is not None and received >= length:
                return
            data = connection.receive(clock)
            arrived = connection.last_byte_s
            if not data:
                if length is not None:
                    raise ConnectionError("the server closed the connection mid-answer")
                return
    buffer, left_in_chunk, after_chunk = rest, 0, False
    while True:
        if left_in_chunk and buffer:
            piece, buffer = buffer[:left_in_chunk], buffer[left_in_chunk:]
            left_in_chunk -= len(piece)
            after_chunk = not left_in_chunk          # the chunk's own CRLF follows it
            yield piece, arrived
            continue
        if not left_in_chunk:
            if after_chunk and len(buffer) >= 2:
                buffer, after_chunk = buffer[2:], False
            if not after_chunk and b"\r\n" in buffer:
                line, _, buffer = buffer.partition(b"\r\n")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return
                left_in_chunk = size
                continue
        if len(buffer) > MAX_EVENT_BYTES:
            raise BadReply(f"reply too large: a chunk over {MAX_EVENT_BYTES:,} bytes")
        data = connection.receive(clock)
        if not data:
            raise ConnectionError("the server closed the connection mid-answer")
        buffer += data
        arrived = connection.last_byte_s


def events(pieces: Iterator[tuple[bytes, float]]) -> Iterator[tuple[str, float]]:
    """Server-sent events' data fields, with the arrival time of the bytes that completed each;
    comments (keep-alives) skipped."""
    buffer = b""
    for data, arrived in pieces:
        buffer = (buffer + data).replace(b"\r\n", b"\n")
        while b"\n\n" in buffer:
            event, _, buffer = buffer.partition(b"\n\n")
            lines = [line for line in event.decode("utf-8", "replace").split("\n")
                     if line.startswith("data:")]
            if lines:
                yield "\n".join(line[5:].removeprefix(" ") for line in lines), arrived
        if len(buffer) > MAX_EVENT_BYTES:      # bounded, so joining pieces stays cheap
            raise BadReply(f"reply too large: an event over {MAX_EVENT_BYTES:,} bytes")
    if buffer.strip():
        raise BadReply(f"the stream ended inside an event: {excerpt(buffer.decode())}")


def collect(pieces: Iterator[tuple[bytes, float]]) -> bytes:
    body = b""
    try:
        for data, _ in pieces:
            body += data
            if len(body) > MAX_ERROR_BODY_BYTES:
                break
    except ConnectionError:
        pass                       # a body cut short still says why it was refused
    return body


def excerpt(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= EXCERPT_CHARS else line[:EXCERPT_CHARS - 1] + "…"
