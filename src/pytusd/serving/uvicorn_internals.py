"""Every use pytusd makes of uvicorn's internals, and a check at import that they are all there.

uvicorn's protocol classes are pluggable (``uvicorn.Config(http=...)``), but what a subclass can
reach is not a public API: the request cycle's attributes (``body``, ``more_body``,
``keep_alive``...), the parser attribute, the status line table, the body of ``receive``. They are
kept here, behind the methods of :class:`HttpToolsBase`, so that a uvicorn release that moves them
breaks one module, at import, with a message that says what is missing, rather than uploads at
run time. pyproject.toml bounds uvicorn (``<0.60``) to the versions this was checked against.

The protocol (``pytusd.serving.protocol``) subclasses :class:`HttpToolsBase`, overrides uvicorn's
parser callbacks (``on_url``, ``on_header``, ...) calling ``super()``, and otherwise uses only
``self.transport`` and ``self.loop``: the connection and the loop any asyncio protocol holds.
"""

from __future__ import annotations

import contextlib
import inspect
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import httptools
import uvicorn

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent


class UvicornMismatch(ImportError):
    """The installed uvicorn lacks internals that pytusd's serving layer relies on."""


#: uvicorn protocol methods pytusd overrides or calls -> positional parameters after ``self``
PROTOCOL_METHODS = {
    "connection_made": 1,
    "connection_lost": 1,
    "data_received": 1,
    "eof_received": 0,
    "pause_writing": 0,
    "resume_writing": 0,
    "send_400_response": 1,
    "on_message_begin": 0,
    "on_url": 1,
    "on_header": 2,
    "on_headers_complete": 0,
    "on_body": 1,
    "_should_upgrade": 0,
}
#: attributes of the protocol that pytusd reads or sets
PROTOCOL_ATTRIBUTES = ("transport", "loop", "flow", "parser", "scope", "cycle", "app")
#: attributes of the request cycle that pytusd reads or sets (its ``receive`` is copied below)
CYCLE_ATTRIBUTES = (
    "scope", "transport", "flow", "message_event", "body", "more_body", "keep_alive", "disconnected",
    "waiting_for_100_continue", "response_started", "response_complete",
)  # fmt: skip
#: keyword arguments uvicorn's server passes to the protocol class (BufferedHttpProtocol passes them on)
PROTOCOL_KWARGS = ("config", "server_state", "app_state", "_loop")


def _names_in_code(cls: type) -> set[str]:
    """Attribute (and global) names the methods of ``cls`` and its bases refer to."""
    names: set[str] = set()
    for klass in cls.__mro__:
        for value in vars(klass).values():
            code = getattr(value, "__code__", None)
            if code is not None:
                names.update(code.co_names)
    return names


def _positional(method: Any) -> int:
    params = list(inspect.signature(method).parameters.values())[1:]  # without self
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds)


def missing_internals(
    protocol: type | None, cycle: type | None, status_line: object, high_water: object, flow: type | None
) -> list[str]:
    """What of uvicorn's internals pytusd uses is not there, or not in the shape it needs.

    The arguments are what uvicorn has under the names pytusd uses (None where it has nothing):
    ``httptools_impl.HttpToolsProtocol``, ``httptools_impl.RequestResponseCycle``,
    ``httptools_impl.STATUS_LINE``, ``flow_control.HIGH_WATER_LIMIT``, ``flow_control.FlowControl``.
    """
    missing = [
        f"{module}.{name}"
        for module, name, value in [
            ("httptools_impl", "HttpToolsProtocol", protocol),
            ("httptools_impl", "RequestResponseCycle", cycle),
            ("flow_control", "FlowControl", flow),
        ]
        if not isinstance(value, type)
    ]
    if isinstance(protocol, type):
        missing += _missing_of_protocol(protocol)
    if isinstance(cycle, type):
        missing += _missing_of_cycle(cycle)
    if not isinstance(status_line, dict) or not all(isinstance(status_line.get(code), bytes) for code in (100, 400)):
        missing.append("httptools_impl.STATUS_LINE (a dict of status code -> status line)")
    if not isinstance(high_water, int):
        missing.append("flow_control.HIGH_WATER_LIMIT (an int)")
    if isinstance(flow, type):
        missing += [
            f"{flow.__name__}.{name}()" for name in ("pause_reading", "resume_reading") if not hasattr(flow, name)
        ]
    return missing


def _missing_of_protocol(protocol: type) -> list[str]:
    missing: list[str] = []
    for name, count in PROTOCOL_METHODS.items():
        method = getattr(protocol, name, None)
        if not callable(method):
            missing.append(f"{protocol.__name__}.{name}()")
        elif _positional(method) != count:
            missing.append(f"{protocol.__name__}.{name}() with {count} argument(s)")
    params = inspect.signature(protocol).parameters
    missing += [f"{protocol.__name__}({kwarg}=...)" for kwarg in PROTOCOL_KWARGS if kwarg not in params]
    return missing + _attributes(protocol, PROTOCOL_ATTRIBUTES)


def _missing_of_cycle(cycle: type) -> list[str]:
    missing: list[str] = []
    receive = getattr(cycle, "receive", None)
    if not inspect.iscoroutinefunction(receive) or _positional(receive) != 0:
        missing.append(f"async {cycle.__name__}.receive()")
    return missing + _attributes(cycle, CYCLE_ATTRIBUTES)


def _attributes(cls: type, names: Iterable[str]) -> list[str]:
    used = _names_in_code(cls)
    return [f"{cls.__name__}.{name}" for name in names if name not in used]


def require(missing: list[str], version: str) -> None:
    """Raise :class:`UvicornMismatch` naming ``version`` and what it lacks, if anything."""
    if missing:
        raise UvicornMismatch(
            f"pytusd's serving layer does not work with the installed uvicorn {version}: it lacks "
            + "; ".join(missing)
            + " (pytusd supports uvicorn <0.60, see pyproject.toml)"
        )


try:
    from uvicorn.protocols.http import flow_control, httptools_impl
except ImportError as exc:
    require([f"the module {exc.name or exc}"], uvicorn.__version__)
    raise
require(
    missing_internals(
        getattr(httptools_impl, "HttpToolsProtocol", None),
        getattr(httptools_impl, "RequestResponseCycle", None),
        getattr(httptools_impl, "STATUS_LINE", None),
        getattr(flow_control, "HIGH_WATER_LIMIT", None),
        getattr(flow_control, "FlowControl", None),
    ),
    uvicorn.__version__,
)
# Checked: what follows may use them.
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle  # noqa: E402


def add_reason_phrases(phrases: Mapping[int, str]) -> None:
    """Teach uvicorn status lines for codes that http.HTTPStatus (its source) lacks."""
    for code, phrase in phrases.items():
        httptools_impl.STATUS_LINE[code] = f"HTTP/1.1 {code} {phrase}\r\n".encode()


#: Bytes buffered for one request before the socket stops being read (backpressure).
BODY_HIGH_WATER = max(flow_control.HIGH_WATER_LIMIT, 256 * 1024)


#: Chunks smaller than this are gathered into one: a body sent in tiny chunks (one byte each, in
#: chunked coding) would otherwise cost a message, and a write, per chunk. Larger ones are handed
#: over as they are, without a copy.
GATHER_BELOW = 16 * 1024


class _Chunks:
    """Stands in for uvicorn's per-request ``bytearray`` body buffer.

    ``cycle.receive()`` calls ``bytes(buffer)``: with one chunk buffered, that returns the chunk
    itself, with no copy; several are joined once. Chunks leave from the front in constant time
    (a deque: a list's ``pop(0)`` made thousands of tiny chunks quadratic).
    """

    __slots__ = ("chunks", "gathering", "size")

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        #: small chunks received since the last large one, gathered
        self.gathering: bytearray | None = None
        self.size = 0

    def append(self, chunk: bytes) -> None:
        # Called once per chunk of the body (a million times for a MiB in 1-byte chunks): lean.
        size = len(chunk)
        self.size += size
        if size < GATHER_BELOW:
            gathering = self.gathering
            if gathering is None:
                if size:
                    self.gathering = bytearray(chunk)
            else:
                gathering += chunk
                if len(gathering) >= GATHER_BELOW:
                    self._flush()
            return
        if self.gathering is not None:
            self._flush()
        self.chunks.append(chunk)

    def _flush(self) -> None:
        if self.gathering is not None:
            self.chunks.append(bytes(self.gathering))
            self.gathering = None

    def __len__(self) -> int:
        return self.size

    def count(self) -> int:
        """Chunks that :meth:`pop_oldest` would hand over."""
        return len(self.chunks) + (self.gathering is not None)

    def pop_oldest(self) -> bytes:
        if not self.chunks:
            self._flush()
        chunk = self.chunks.popleft()
        self.size -= len(chunk)
        return chunk

    def all(self) -> list[bytes]:
        self._flush()
        return list(self.chunks)

    def __bytes__(self) -> bytes:
        self._flush()
        if len(self.chunks) == 1:
            return self.chunks[0]
        return b"".join(self.chunks)


class _Cycle(RequestResponseCycle):
    """uvicorn's request cycle, handing over buffered body chunks one by one.

    uvicorn's ``receive`` joins everything buffered into one ``bytes`` (a copy of each chunk, and
    several reads often arrive while the app writes the previous chunk). Returning the oldest
    chunk while more are buffered costs one more call instead of the copy. Otherwise this is
    uvicorn's ``receive`` (0.5x), which the version bound in pyproject.toml keeps in step.
    """

    async def receive(self) -> ASGIReceiveEvent:
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False

        if not self.disconnected and not self.response_complete:
            if _buffered_chunks(self.body) > 1:
                return self._oldest_chunk()
            self.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()

        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        if _buffered_chunks(self.body) > 1:
            self.message_event.set()  # more is buffered: the next receive must not wait
            return self._oldest_chunk()
        message: ASGIReceiveEvent = {"type": "http.request", "body": bytes(self.body), "more_body": self.more_body}
        self.body = bytearray()
        return message

    def _oldest_chunk(self) -> ASGIReceiveEvent:
        body: Any = self.body
        return {"type": "http.request", "body": body.pop_oldest(), "more_body": True}


def _buffered_chunks(body: object) -> int:
    return body.count() if type(body) is _Chunks else 0


class HttpToolsBase(HttpToolsProtocol):
    """uvicorn's httptools protocol, with each reach into its internals behind a method.

    It also hands each received chunk to the app without the two copies (``bytearray +=`` then
    ``bytes()``) that stock uvicorn makes per chunk: :meth:`on_body` buffers chunks in a
    :class:`_Chunks`, which :class:`_Cycle` hands over one by one.
    """

    #: the current request upgrades (its body is not the app's): decided once its headers are in,
    #: not again for every chunk of its body as uvicorn does
    _upgrading = False

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._upgrading = bool(self.parser.should_upgrade() and self._should_upgrade())
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = _Cycle  # same object, our receive (uvicorn builds it inline)

    def on_body(self, body: bytes) -> None:
        """uvicorn's ``on_body``, buffering chunks as they are instead of joining them."""
        cycle: Any = self.cycle  # its ``body`` becomes a _Chunks, which uvicorn's types do not know
        if cycle.response_complete or self._upgrading:
            return
        buffer = cycle.body
        if type(buffer) is not _Chunks:
            fresh = _Chunks()
            if buffer:
                fresh.append(bytes(buffer))
            cycle.body = fresh
            buffer = fresh
        buffer.append(body)
        if buffer.size > BODY_HIGH_WATER:
            self.flow.pause_reading()
        cycle.message_event.set()

    # -- for the scope extensions

    def _request_scope(self) -> Any:
        """The scope of the request being parsed."""
        return self.scope

    def _request_cycle(self) -> object:
        """The current request (its cycle): pass it back to the methods below."""
        return self.cycle

    def _may_send_interim(self, scope: object) -> bool:
        """Is ``scope``'s request still waiting for its final response, on a connection that is open?"""
        cycle = self.cycle
        # Only while this request's final response has not started; never to HTTP/1.0 (RFC 9110).
        if cycle is None or cycle.scope is not scope or cycle.response_started or cycle.disconnected:
            return False
        if cycle.scope.get("http_version") == "1.0":
            return False
        return not self.transport.is_closing()

    # -- for splicing: the body's bytes leave through the protocol's back, so it must be told

    def _take_buffered_body(self, request: object) -> tuple[list[bytes], bool, bool]:
        """Send a 100 Continue if one is due; take the body buffered so far.

        Returns (chunks, more body to come, client disconnected).
        """
        cycle: Any = request
        if cycle.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        buffered: Any = cycle.body
        cycle.body = bytearray()
        chunks = buffered.all() if type(buffered) is _Chunks else [bytes(buffered)]
        return chunks, cycle.more_body, cycle.disconnected

    def _pause_reading(self) -> None:
        self.flow.pause_reading()

    def _resume_reading(self) -> None:
        self.flow.resume_reading()

    def _body_bypassed_parser(self, request: object) -> None:
        """The rest of the body was moved past httptools: a fresh parser takes the next request."""
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # as uvicorn: answer before a pipelined request
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        cycle: Any = request
        cycle.more_body = False

    def _lost_count_of_body(self, request: object) -> None:
        """httptools lost count of this body: do not parse what follows, close after the response."""
        cycle: Any = request
        cycle.keep_alive = False

    @staticmethod
    async def _receive_chunk(request: object) -> tuple[bytes, bool, bool]:
        """The next piece of the body read by the parser: (bytes, more to come, client gone).

        For a rest too short to repay a pipe, or one that cannot be spliced.
        """
        cycle: Any = request
        message: Any = await cycle.receive()  # http.request or http.disconnect
        if message["type"] == "http.disconnect":
            return b"", False, True
        return message["body"], bool(message["more_body"]), False

    @staticmethod
    def _hold_keep_alive(request: object) -> bool:
        """Until the rest of a body is moved, answering closes the connection; returns the old value."""
        cycle: Any = request
        was = bool(cycle.keep_alive)
        cycle.keep_alive = False
        return was

    @staticmethod
    def _restore_keep_alive(request: object, keep_alive: bool) -> None:
        cycle: Any = request
        cycle.keep_alive = keep_alive
