"""The one raw HTTP/1.1 client of the tests: bytes over a real TCP socket, nothing normalized.

httpx normalizes what many tests must send verbatim (paths with ``..``, control characters, odd
Host headers, ``Expect: 100-continue`` timing, a body that stops half-way) and swallows interim
(1xx) responses, which the IETF draft is largely about. :class:`Connection` sends a request head,
a body in pieces or chunked with trailers, and reads every response - interim ones included - in
the order it arrived, on a connection that stays open for the next request (keep-alive).

The tus- and IETF-specific conveniences are thin functions on top (tests/integration/tus_helpers.py,
tests/integration/ietf_helpers.py, the worker placement of tests/integration/test_locking.py).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

#: Generous bound for anything that must not hang (never a performance expectation).
TIMEOUT = 10.0

Header = tuple[str, str]
HeaderItems = Sequence[tuple[str | bytes, str | bytes]]


class Address(Protocol):
    host: str
    port: int


# -- messages -----------------------------------------------------------------------------------


def join_headers(header_list: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; repeated fields joined with ", " (as a server would see them)."""
    joined: dict[str, str] = {}
    for name, value in header_list:
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


@dataclass
class Response:
    """One response on the wire: an interim (1xx) or a final one."""

    status: int
    reason: str
    header_list: list[Header]
    body: bytes = b""
    #: For a final response read by :meth:`Connection.read_response`: the 1xx responses before it.
    interims: list[Response] = field(default_factory=list)

    @property
    def interim(self) -> bool:
        return 100 <= self.status < 200

    @property
    def headers(self) -> dict[str, str]:
        return join_headers(self.header_list)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    get = header

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.header_list if n.lower() == name.lower())

    @property
    def offset(self) -> int | None:
        """``Upload-Offset`` as a number, if present."""
        value = self.header("upload-offset")
        return int(value) if value is not None else None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def raw_head(self) -> bytes:
        lines = [f"{n}: {v}" for n, v in self.header_list]
        return "\r\n".join(lines).encode("latin-1")

    def __repr__(self) -> str:  # short, for assertion messages
        return f"<{self.status} {self.header_list!r} {self.body[:200]!r}>"


# -- requests -----------------------------------------------------------------------------------


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def build_head(
    method: str | bytes,
    target: str | bytes,
    headers: HeaderItems = (),
    *,
    content_length: int | None = None,
    host: str | bytes | None = "localhost",
) -> bytes:
    """Request line and header fields, verbatim. ``Host`` is added unless given (or ``host=None``);
    ``Content-Length`` when ``content_length`` is given and neither it nor Transfer-Encoding is."""
    lines = [_bytes(method) + b" " + _bytes(target) + b" HTTP/1.1"]
    names = {_bytes(n).lower() for n, _ in headers}
    if host is not None and b"host" not in names:
        lines.append(b"Host: " + _bytes(host))
    lines += [_bytes(name) + b": " + _bytes(value) for name, value in headers]
    if content_length is not None and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(content_length).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def build_request(
    method: str | bytes,
    target: str | bytes,
    headers: HeaderItems = (),
    body: bytes = b"",
    *,
    host: str | bytes | None = "localhost",
    content_length: bool = True,
) -> bytes:
    """A whole request: :func:`build_head` (with ``Content-Length: len(body)`` unless told not to) and the body."""
    size = len(body) if content_length else None
    return build_head(method, target, headers, content_length=size, host=host) + body


def chunked(pieces: Iterable[bytes], trailers: Sequence[Header] = ()) -> bytes:
    """A chunked body (RFC 9112 section 7.1) with optional trailer fields."""
    out = b""
    for piece in pieces:
        if piece:
            out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    out += b"0\r\n"
    for name, value in trailers:
        out += f"{name}: {value}\r\n".encode("latin-1")
    return out + b"\r\n"


def split(body: bytes, pieces: int) -> list[bytes]:
    """``body`` in ``pieces`` nearly equal parts."""
    size = max(1, -(-len(body) // max(pieces, 1)))
    return [body[i : i + size] for i in range(0, len(body), size)]


# -- the connection -------------------------------------------------------------------------------


class Connection:
    """One TCP connection to a server: send bytes verbatim, read responses one by one.

    ``timeout`` bounds every single wait on the socket, so a server that stops answering fails
    the test instead of hanging it. TCP_NODELAY is on, so pieces of a body leave when sent.
    """

    def __init__(self, server: Address, timeout: float = TIMEOUT, *, nodelay: bool = True) -> None:
        self.server = server
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buffer = b""
        #: Body bytes sent by :meth:`send_body` since the last :meth:`send_head`.
        self.sent_body = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    # -- sending --

    def send(self, data: bytes) -> bool:
        """Send ``data`` as it is; False if the server already closed (or reset) the connection."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def send_head(
        self, method: str | bytes, target: str | bytes, headers: HeaderItems = (), *,
        content_length: int | None = None, host: str | bytes | None = "localhost",
    ) -> bool:  # fmt: skip
        """Send a request head (see :func:`build_head`); the body follows with :meth:`send_body`."""
        self.sent_body = 0
        return self.send(build_head(method, target, headers, content_length=content_length, host=host))

    def send_body(self, data: bytes) -> bool:
        """Send (part of) a body and count it; False if the server already closed the connection."""
        if not self.send(data):
            return False
        self.sent_body += len(data)
        return True

    def send_pieces(self, body: bytes, pieces: int, pause: float = 0.0) -> None:
        """Send ``body`` in ``pieces`` parts with ``pause`` seconds between them."""
        for i, part in enumerate(split(body, pieces)):
            if i and pause:
                time.sleep(pause)
            self.send_body(part)

    def send_chunked(self, pieces: Iterable[bytes], trailers: Sequence[Header] = (), pause: float = 0.0) -> None:
        """Send a chunked body one chunk at a time, then the last chunk with ``trailers``."""
        for i, piece in enumerate(pieces):
            if i and pause:
                time.sleep(pause)
            if piece:
                self.send_body(chunked([piece])[: -len(b"0\r\n\r\n")])
        self.send(chunked([], trailers))

    # -- reading --

    def readable(self, wait: float) -> bool:
        """Bytes (or EOF) arrive within ``wait`` seconds, or are already buffered."""
        if self.buffer:
            return True
        ready, _, _ = select.select([self.sock], [], [], wait)
        return bool(ready)

    def _fill(self, deadline: float | None = None) -> bool:
        """Read more into the buffer; False at EOF or reset. TimeoutError past ``deadline``."""
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(min(remaining, self.timeout))
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return False
        finally:
            if deadline is not None:
                self.sock.settimeout(self.timeout)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def _read_until(self, marker: bytes, deadline: float | None) -> bytes:
        while marker not in self.buffer:
            if not self._fill(deadline):
                raise ConnectionError(f"connection closed before {marker!r}; got {self.buffer[:300]!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exact(self, n: int, deadline: float | None) -> bytes:
        while len(self.buffer) < n:
            if not self._fill(deadline):
                raise ConnectionError(f"connection closed inside a body ({len(self.buffer)} of {n} bytes)")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _read_body(self, headers: dict[str, str], deadline: float | None) -> bytes:
        """The body after a head with these (lower-case) headers: chunked, sized, or up to EOF."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self._read_until(b"\r\n", deadline).split(b";")[0], 16)
                if size == 0:
                    line = self._read_until(b"\r\n", deadline)
                    while line:  # trailer fields, then the empty line
                        line = self._read_until(b"\r\n", deadline)
                    return body
                body += self._read_exact(size, deadline)
                self._read_exact(2, deadline)
        if "content-length" in headers:
            return self._read_exact(int(headers["content-length"]), deadline)
        more = self._fill(deadline)
        while more:  # no length given: the body ends with the connection
            more = self._fill(deadline)
        body, self.buffer = self.buffer, b""
        return body

    def read_head(self, *, deadline: float | None = None) -> Response:
        """Status line and header fields of the next response (interim or final), no body."""
        head = self._read_until(b"\r\n\r\n", deadline).decode("latin-1")
        status_line, *lines = head.split("\r\n")
        version, status, *reason = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        header_list = []
        for line in lines:
            name, sep, value = line.partition(":")
            assert sep, f"malformed header line {line!r}"
            header_list.append((name.strip(), value.strip()))
        return Response(int(status), reason[0] if reason else "", header_list)

    def read_message(self, method: str = "GET", *, deadline: float | None = None) -> Response:
        """The next response on the connection, interim or final (with its body)."""
        message = self.read_head(deadline=deadline)
        if message.interim or method.upper() == "HEAD" or message.status in (204, 304):
            return message
        message.body = self._read_body(message.headers, deadline)
        return message

    def read_response(self, method: str = "GET", *, timeout: float | None = None) -> Response:
        """The final response (its 1xx predecessors in ``.interims``); within ``timeout`` if given."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interims: list[Response] = []
        while (message := self.read_message(method, deadline=deadline)).interim and message.status != 101:
            interims.append(message)
        message.interims = interims
        return message

    def read_reply(self, timeout: float = TIMEOUT, *, method: str = "GET") -> Response | None:
        """The final response; None if the server closed the connection without one.

        Fails (AssertionError) if neither happens within ``timeout`` seconds: the request hangs.
        """
        try:
            return self.read_response(method, timeout=timeout)
        except ConnectionError:
            return None
        except TimeoutError:
            raise AssertionError(f"no response and no close within {timeout} s (the request hangs)") from None

    def closed_by_peer(self, wait: float = TIMEOUT) -> bool:
        """The server closed the connection (or reset it) within ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not self.readable(deadline - time.monotonic()):
                return False
            try:
                if not self._fill(deadline):
                    return True
            except TimeoutError:
                return False
        return False

    def request(
        self,
        method: str,
        target: str | bytes,
        headers: HeaderItems = (),
        body: bytes = b"",
        *,
        host: str | bytes | None = "localhost",
        content_length: bool = True,
    ) -> Response:
        """Send a whole request (see :func:`build_request`) and read its final response."""
        self.send(build_request(method, target, headers, body, host=host, content_length=content_length))
        return self.read_response(method)


def raw_request(
    server: Address,
    method: str,
    target: str | bytes,
    headers: HeaderItems = (),
    body: bytes = b"",
    *,
    host: str | bytes | None = "localhost",
    content_length: bool = True,
) -> Response:
    """One request on a fresh connection, sent byte for byte as given; the final response."""
    with Connection(server) as conn:
        return conn.request(method, target, headers, body, host=host, content_length=content_length)
