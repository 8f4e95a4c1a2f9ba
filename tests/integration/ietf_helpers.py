"""Raw HTTP/1.1 for the IETF resumable upload draft tests.

httpx and friends swallow 1xx responses, but the draft is largely about them (104 Upload
Resumption Supported, ordered against 100 Continue), so :class:`RawHTTP` speaks HTTP/1.1 by hand
over a plain socket and returns EVERY response of a request, interim ones included, in the
order they arrived. Bodies can be sent in pieces with pauses, and the caller can interleave
sending and reading (e.g. wait for a progress 104 after each piece).
"""

from __future__ import annotations

import json
import select
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import http_sf
from tests.integration.tus_helpers import SocketReader, join_headers
from tests.support.server import ServerProcess

#: Generous bound for anything that must not hang (never a performance expectation).
TIMEOUT = 10.0
PARTIAL = "application/partial-upload"
OCTET = "application/offset+octet-stream"
PROBLEM = "https://iana.org/assignments/http-problem-types#"
MISMATCHING_OFFSET = PROBLEM + "mismatching-upload-offset"
COMPLETED_UPLOAD = PROBLEM + "completed-upload"
INCONSISTENT_LENGTH = PROBLEM + "inconsistent-upload-length"
VERSIONS = (3, 4, 5, 6, 7, 8)

Header = tuple[str, str]


# -- messages -----------------------------------------------------------------------------------


@dataclass
class Message:
    """One response on the wire: an interim (1xx) or a final one."""

    status: int
    reason: str
    header_list: list[Header]
    body: bytes = b""

    @property
    def interim(self) -> bool:
        return 100 <= self.status < 200

    @property
    def headers(self) -> dict[str, str]:
        return join_headers(self.header_list)

    def get(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.header_list if n.lower() == name.lower())

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:  # short, for assertion messages
        return f"<{self.status} {self.header_list!r} {self.body[:200]!r}>"


@dataclass
class Exchange:
    """Everything one request got back, in order; the last message is the final response."""

    messages: list[Message] = field(default_factory=list)
    #: How many messages had arrived when the request body started to be sent (Expect tests).
    before_body: int | None = None

    @property
    def final(self) -> Message:
        assert self.messages, "no response at all"
        last = self.messages[-1]
        assert not last.interim, f"no final response, only {self.messages!r}"
        return last

    @property
    def interims(self) -> list[Message]:
        return [m for m in self.messages if m.interim]

    def of_status(self, status: int) -> list[Message]:
        return [m for m in self.messages if m.status == status]

    @property
    def status(self) -> int:
        return self.final.status

    def __repr__(self) -> str:
        return f"Exchange({self.messages!r})"


# -- the connection -------------------------------------------------------------------------------


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def build_head(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]] = (),
    *,
    content_length: int | None = None,
    host: str = "localhost",
) -> bytes:
    """Request line and headers; ``Content-Length`` added when given and not already present."""
    headers = list(headers)
    names = {n.lower() for n, _ in headers}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {host}")
    lines += [f"{n}: {v}" for n, v in headers]
    if content_length is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


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


class RawHTTP(SocketReader):
    """One TCP connection to the server: send bytes verbatim, read responses one by one."""

    def __init__(self, server: ServerProcess, timeout: float = TIMEOUT) -> None:
        super().__init__(server, timeout, nodelay=True)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def readable(self, wait: float) -> bool:
        """Bytes (or EOF) arrive within ``wait`` seconds, or are already buffered."""
        if self.buffer:
            return True
        ready, _, _ = select.select([self.sock], [], [], wait)
        return bool(ready)

    def read_message(self, method: str = "GET") -> Message:
        """The next response on the connection, interim or final (with its body)."""
        message = Message(*self._read_head())
        if message.interim or method == "HEAD" or message.status in (204, 304):
            return message
        message.body = self._read_body(message.headers)
        return message

    def read_exchange(self, method: str = "GET", exchange: Exchange | None = None) -> Exchange:
        """Read responses until (and including) the final one."""
        exchange = exchange or Exchange()
        while not exchange.messages or exchange.messages[-1].interim:
            exchange.messages.append(self.read_message(method))
        return exchange

    def read_interim(self, exchange: Exchange, method: str = "GET") -> Message:
        """Read one more message into ``exchange``, which must be an interim one."""
        message = self.read_message(method)
        exchange.messages.append(message)
        assert message.interim, f"expected an interim response, got {exchange!r}"
        return message

    def closed_by_peer(self, wait: float = TIMEOUT) -> bool:
        """The server closed the connection (or reset it) within ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not self.readable(deadline - time.monotonic()):
                return False
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                return True
            if not chunk:
                return True
            self.buffer += chunk
        return False


def exchange(
    server: ServerProcess,
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    pieces: int = 1,
    pause: float = 0.0,
    expect_continue: bool = False,
    content_length: bool = True,
) -> Exchange:
    """One request on a fresh connection; returns every response it got, in order.

    ``pieces``/``pause``: the body is sent in that many parts with a pause between them.
    ``expect_continue``: sends ``Expect: 100-continue`` and withholds the body until a 100
    arrives; ``Exchange.before_body`` then counts the responses that came first.
    """
    headers = list(headers)
    if expect_continue:
        headers.append(("Expect", "100-continue"))
    head = build_head(method, target, headers, content_length=len(body) if content_length else None)
    result = Exchange()
    with RawHTTP(server) as conn:
        if expect_continue:
            conn.send(head)
            while True:
                message = conn.read_message(method)
                result.messages.append(message)
                if not message.interim:
                    return result  # answered without asking for the body
                if message.status == 100:
                    break
            result.before_body = len(result.messages)
            send_pieces(conn, body, pieces, pause)
        elif pieces <= 1 or not body:
            conn.send(head + body)
        else:
            conn.send(head)
            send_pieces(conn, body, pieces, pause)
        return conn.read_exchange(method, result)


def split(body: bytes, pieces: int) -> list[bytes]:
    size = max(1, -(-len(body) // max(pieces, 1)))
    return [body[i : i + size] for i in range(0, len(body), size)]


def send_pieces(conn: RawHTTP, body: bytes, pieces: int, pause: float) -> None:
    parts = split(body, pieces)
    for i, part in enumerate(parts):
        if i and pause:
            time.sleep(pause)
        conn.send(part)


# -- draft requests -------------------------------------------------------------------------------


def version_header(version: int | str) -> Header:
    return ("Upload-Draft-Interop-Version", str(version))


def complete_header(version: int, complete: bool) -> Header:
    """``Upload-Complete`` (v4+) or its inverse ``Upload-Incomplete`` (v3)."""
    if version == 3:
        return ("Upload-Incomplete", "?0" if complete else "?1")
    return ("Upload-Complete", "?1" if complete else "?0")


def draft(version: int, complete: bool | None = None, *extra: Header) -> list[Header]:
    headers = [version_header(version)]
    if complete is not None:
        headers.append(complete_header(version, complete))
    return [*headers, *extra]


def completeness(message: Message, version: int) -> bool | None:
    """What a response says about completeness, in the version's own header."""
    if version == 3:
        value = message.get("upload-incomplete")
        return None if value is None else value == "?0"
    value = message.get("upload-complete")
    return None if value is None else value == "?1"


def append_headers(version: int, offset: int, complete: bool, *extra: Header) -> list[Header]:
    headers = draft(version, complete, ("Upload-Offset", str(offset)), *extra)
    if version >= 6:
        headers.append(("Content-Type", PARTIAL))
    return headers


def path_of(location: str) -> str:
    return urlsplit(location).path


def create(server: ServerProcess, version: int, body: bytes = b"", *, complete: bool = False,
           extra: Sequence[Header] = ()) -> tuple[str, Exchange]:  # fmt: skip
    """Draft creation by POST; returns the upload's path and the exchange."""
    result = exchange(server, "POST", "/files/", draft(version, complete, *extra), body)
    assert result.status in (200, 201, 204), result
    location = result.final.get("location")
    assert location, result
    return path_of(location), result


def append(server: ServerProcess, version: int, path: str, offset: int, body: bytes, *, complete: bool = False,
           extra: Sequence[Header] = (), **kwargs: Any) -> Exchange:  # fmt: skip
    return exchange(server, "PATCH", path, append_headers(version, offset, complete, *extra), body, **kwargs)


def head(server: ServerProcess, path: str, version: int | None = None) -> Message:
    headers = draft(version) if version is not None else [("Tus-Resumable", "1.0.0")]
    return exchange(server, "HEAD", path, headers, content_length=False).final


def offset_of(message: Message) -> int:
    value = message.get("upload-offset")
    assert value is not None and value.isdigit(), message
    return int(value)


def limits(message: Message) -> dict[str, Any] | None:
    """``Upload-Limit`` parsed as a Structured Fields Dictionary (member values, no params)."""
    value = message.get("upload-limit")
    if value is None:
        return None
    parsed = http_sf.parse(value.encode("latin-1"), tltype="dictionary")
    return {name: member[0] for name, member in parsed.items()}


def problem(message: Message) -> dict[str, Any]:
    content_type = (message.get("content-type") or "").split(";")[0].strip()
    assert content_type == "application/problem+json", message
    document = message.json()
    assert isinstance(document, dict), document
    return document
