"""Draft conversations for the IETF resumable upload tests, over the raw client of tests/support/rawhttp.py.

httpx and friends swallow 1xx responses, but the draft is largely about them (104 Upload
Resumption Supported, ordered against 100 Continue), so these helpers return EVERY response of a
request, interim ones included, in the order they arrived (an :class:`Exchange`). Bodies can be
sent in pieces with pauses, and the caller can interleave sending and reading (e.g. wait for a
progress 104 after each piece).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import http_sf
from tests.support.rawhttp import Connection, Header, build_head
from tests.support.rawhttp import Response as Message
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


# -- exchanges ----------------------------------------------------------------------------------


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


# -- reading ------------------------------------------------------------------------------------


def read_exchange(conn: Connection, method: str = "GET", exchange: Exchange | None = None) -> Exchange:
    """Read responses until (and including) the final one."""
    exchange = exchange or Exchange()
    while not exchange.messages or exchange.messages[-1].interim:
        exchange.messages.append(conn.read_message(method))
    return exchange


def read_interim(conn: Connection, exchange: Exchange, method: str = "GET") -> Message:
    """Read one more message into ``exchange``, which must be an interim one."""
    message = conn.read_message(method)
    exchange.messages.append(message)
    assert message.interim, f"expected an interim response, got {exchange!r}"
    return message


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
    with Connection(server) as conn:
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
            conn.send_pieces(body, pieces, pause)
        elif pieces <= 1 or not body:
            conn.send(head + body)
        else:
            conn.send(head)
            conn.send_pieces(body, pieces, pause)
        return read_exchange(conn, method, result)


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
    assert result.status == 201, result
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
