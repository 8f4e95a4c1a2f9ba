"""pytusd's serving layer (``pytusd.serving``) and the app without it.

Without the serving layer's scope extensions (``pytusd.interim``, ``pytusd.trailers``), the ASGI
app mounted elsewhere must degrade: no 104 (it cannot send one) and no ``checksum-trailer`` in
``Tus-Extension`` (it cannot read trailers). With them, it uses both. The protocol class itself
is exercised in a real uvicorn server (in a thread, in-process) with a small recording app.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import pickle
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http import httptools_impl

from pytusd.asgi import INTERIM_EXTENSION, SPLICE_EXTENSION, TRAILERS_EXTENSION, TusApp
from pytusd.config import Config
from pytusd.serving import BufferedHttpProtocol, PytusdHttpProtocol, ReadBudget
from pytusd.serving.budget import MIN_READ, READ_BUDGET, READ_BUFFER
from pytusd.serving.protocol import LOW_WATER_STALL, _status_line
from pytusd.serving.uvicorn_internals import GATHER_BELOW, _Chunks, _Cycle
from pytusd.stores.memory import MemoryStore

# -- driving the ASGI app by hand -------------------------------------------------------------------


def scope_for(method: str, path: str, headers: dict[str, str], *, extensions: dict[str, Any] | None = None) -> dict:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
    }
    if extensions is not None:
        scope["extensions"] = extensions
    return scope


class Recorder:
    """ASGI ``send`` that keeps every message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def starts(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "http.response.start"]

    @property
    def status(self) -> int:
        (start,) = self.starts
        return int(start["status"])

    def header(self, name: str) -> str | None:
        (start,) = self.starts
        for key, value in start["headers"]:
            if key.decode("latin-1").lower() == name:
                return str(value.decode("latin-1"))
        return None


def receiver(*chunks: bytes) -> Any:
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if not queue:
        queue = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.sleep(3600)  # a real server would wait for the disconnect
        return {"type": "http.disconnect"}

    return receive


def call(app: TusApp, scope: dict[str, Any], *chunks: bytes) -> Recorder:
    send = Recorder()
    asyncio.run(asyncio.wait_for(app(scope, receiver(*chunks), send), 10))
    return send


def extensions_of(recorder: Recorder) -> list[str]:
    return [e.strip() for e in (recorder.header("tus-extension") or "").split(",") if e.strip()]


DRAFT_CREATE = {"host": "example.org", "upload-draft-interop-version": "8", "upload-complete": "?1",
                "content-length": "5"}  # fmt: skip


@pytest.mark.parametrize("extensions", [None, {}, {"http.response.trailers": {}}])
def test_options_without_serving_layer_has_no_checksum_trailer(extensions: dict[str, Any] | None) -> None:
    app = TusApp(MemoryStore(), Config())
    send = call(app, scope_for("OPTIONS", "/files/", {"host": "example.org"}, extensions=extensions))
    assert send.status == 200
    names = extensions_of(send)
    assert "checksum" in names
    assert "checksum-trailer" not in names


@pytest.mark.parametrize("extensions", [None, {}])
def test_draft_creation_without_serving_layer_sends_no_104(extensions: dict[str, Any] | None) -> None:
    app = TusApp(MemoryStore(), Config())
    send = call(app, scope_for("POST", "/files/", DRAFT_CREATE, extensions=extensions), b"hel", b"lo")
    assert [m["type"] for m in send.messages] == ["http.response.start", "http.response.body"]
    assert send.status == 201  # the upload still works, just without interim responses
    assert send.header("upload-complete") == "?1"
    location = send.header("location")
    assert location and location.startswith("http://example.org/files/")

    path = location[len("http://example.org") :]
    head = call(app, scope_for("HEAD", path, {"host": "example.org", "upload-draft-interop-version": "8"}))
    assert head.header("upload-offset") == "5"
    assert head.header("upload-complete") == "?1"


def test_draft_append_without_serving_layer_sends_no_progress() -> None:
    app = TusApp(MemoryStore(), Config(progress_interval=0.01))
    created = call(app, scope_for("POST", "/files/", {**DRAFT_CREATE, "upload-complete": "?0", "content-length": "0"}))
    path = (created.header("location") or "")[len("http://example.org") :]
    headers = {"host": "example.org", "upload-draft-interop-version": "8", "upload-complete": "?1",
               "upload-offset": "0", "content-type": "application/partial-upload"}  # fmt: skip
    send = call(app, scope_for("PATCH", path, headers), b"a" * 10, b"b" * 10, b"c" * 10)
    assert [m["type"] for m in send.messages] == ["http.response.start", "http.response.body"]
    assert send.status == 204


def test_with_serving_extensions_the_app_uses_them() -> None:
    interims: list[tuple[int, list[tuple[bytes, bytes]]]] = []

    async def send_interim(status: int, headers: list[tuple[bytes, bytes]]) -> None:
        interims.append((status, headers))

    extensions = {INTERIM_EXTENSION: {"send": send_interim}, TRAILERS_EXTENSION: {"get": list}}
    app = TusApp(MemoryStore(), Config())
    options = call(app, scope_for("OPTIONS", "/files/", {"host": "example.org"}, extensions=extensions))
    assert "checksum-trailer" in extensions_of(options)

    created = call(app, scope_for("POST", "/files/", DRAFT_CREATE, extensions=extensions), b"hello")
    assert created.status == 201
    assert [status for status, _ in interims] == [104]
    announced = dict(interims[0][1])
    assert announced[b"location"].decode() == created.header("location")
    assert announced[b"upload-draft-interop-version"] == b"8"


def test_tus_request_without_serving_layer_sends_no_104() -> None:
    interims: list[int] = []

    async def send_interim(status: int, headers: list[tuple[bytes, bytes]]) -> None:
        interims.append(status)

    app = TusApp(MemoryStore(), Config())
    headers = {"host": "example.org", "tus-resumable": "1.0.0", "upload-length": "5",
               "content-type": "application/offset+octet-stream", "content-length": "5"}  # fmt: skip
    send = call(app, scope_for("POST", "/files/", headers, extensions={INTERIM_EXTENSION: {"send": send_interim}}),
                b"hello")  # fmt: skip
    assert send.status == 201
    assert interims == []  # 104 is for draft clients only


# -- _Chunks ----------------------------------------------------------------------------------------


def test_chunks_empty() -> None:
    chunks = _Chunks()
    assert len(chunks) == 0
    assert bytes(chunks) == b""
    assert not chunks


def test_chunks_single_chunk_is_not_copied() -> None:
    chunk = b"x" * 100_000
    chunks = _Chunks()
    chunks.append(chunk)
    assert len(chunks) == 100_000
    assert bytes(chunks) is chunk


def test_chunks_several_are_joined_in_order() -> None:
    chunks = _Chunks()
    for piece in (b"ab", b"", b"cde", b"f"):
        chunks.append(piece)
    assert len(chunks) == 6
    assert chunks.size == 6
    assert bytes(chunks) == b"abcdef"
    assert bytes(chunks) == b"abcdef"  # reading does not consume


def test_tiny_chunks_are_gathered_in_order_and_in_linear_time() -> None:
    """A body in 1-byte chunks: handed over in pieces of at least GATHER_BELOW bytes, in order;
    a large chunk passes as it is, after what was gathered before it."""
    chunks = _Chunks()
    for i in range(100_000):
        chunks.append(bytes([i % 251]))
    big = b"z" * 50_000
    chunks.append(big)
    chunks.append(b"tail")
    pieces = []
    while chunks.count():
        pieces.append(chunks.pop_oldest())
    assert b"".join(pieces) == bytes(i % 251 for i in range(100_000)) + big + b"tail"
    # full pieces, then the rest gathered before the large chunk, the large chunk, the tail
    assert all(len(p) >= GATHER_BELOW for p in pieces[:-3]) and len(pieces) == 100_000 // GATHER_BELOW + 3
    assert any(p is big for p in pieces)
    assert len(chunks) == 0


def test_chunks_has_no_instance_dict() -> None:
    with pytest.raises(AttributeError):
        _Chunks().other = 1  # type: ignore[attr-defined]


# -- status lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (104, b"HTTP/1.1 104 Upload Resumption Supported\r\n"),
        (460, b"HTTP/1.1 460 Checksum Mismatch\r\n"),
        (100, b"HTTP/1.1 100 Continue\r\n"),
        (103, b"HTTP/1.1 103 Early Hints\r\n"),
        (199, b"HTTP/1.1 199 \r\n"),
    ],
)
def test_status_line(status: int, line: bytes) -> None:
    assert _status_line(status) == line


def test_uvicorn_knows_the_reason_phrases() -> None:
    assert httptools_impl.STATUS_LINE[104] == b"HTTP/1.1 104 Upload Resumption Supported\r\n"
    assert httptools_impl.STATUS_LINE[460] == b"HTTP/1.1 460 Checksum Mismatch\r\n"


# -- the request cycle, on an object without a connection ---------------------------------------------


class FakeFlow:
    def __init__(self) -> None:
        self.resumed = 0

    def resume_reading(self) -> None:
        self.resumed += 1


def test_cycle_hands_over_buffered_chunks_one_by_one_without_copies() -> None:
    async def main() -> None:
        cycle: Any = _Cycle.__new__(_Cycle)
        chunks = [b"a" * 20_000, b"b" * 30_000, b"c" * 40_000]  # large enough not to be gathered
        cycle.body = _Chunks()
        for chunk in chunks:
            cycle.body.append(chunk)
        cycle.disconnected = cycle.response_complete = cycle.waiting_for_100_continue = False
        cycle.more_body = False  # the whole body has arrived
        cycle.message_event = asyncio.Event()
        cycle.message_event.set()
        cycle.flow, cycle.transport = FakeFlow(), FakeTransport()
        got = [await asyncio.wait_for(cycle.receive(), 1) for _ in chunks]
        assert [m["body"] for m in got] == chunks
        assert all(m["body"] is chunk for m, chunk in zip(got, chunks, strict=True)), "a chunk was copied"
        assert [m["more_body"] for m in got] == [True, True, False]
        assert cycle.flow.resumed == 1, "reading resumed while chunks were still buffered"

    asyncio.run(main())


# -- the interim sender, on a protocol object without a connection ----------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closing


class FakeCycle:
    def __init__(self, scope: object) -> None:
        self.scope = scope
        self.response_started = False
        self.disconnected = False


def protocol_with(scope: object) -> tuple[PytusdHttpProtocol, FakeTransport, FakeCycle]:
    protocol = PytusdHttpProtocol.__new__(PytusdHttpProtocol)
    transport, cycle = FakeTransport(), FakeCycle(scope)
    protocol.transport = transport  # type: ignore[assignment]
    protocol.cycle = cycle  # type: ignore[assignment]
    return protocol, transport, cycle


def test_interim_sender_writes_a_1xx() -> None:
    scope: dict[str, Any] = {}
    protocol, transport, _ = protocol_with(scope)
    send = protocol._interim_sender(scope)
    asyncio.run(send(104, [(b"location", b"/files/x"), (b"upload-draft-interop-version", b"8")]))
    assert transport.written == (
        b"HTTP/1.1 104 Upload Resumption Supported\r\nlocation: /files/x\r\nupload-draft-interop-version: 8\r\n\r\n"
    )


@pytest.mark.parametrize("status", [99, 101, 200, 204, 404])
def test_interim_sender_refuses_non_interim_status(status: int) -> None:
    scope: dict[str, Any] = {}
    protocol, transport, _ = protocol_with(scope)
    with pytest.raises(ValueError):
        asyncio.run(protocol._interim_sender(scope)(status, []))
    assert transport.written == b""


@pytest.mark.parametrize(
    "header", [(b"location", b"/x\r\nSet-Cookie: a=b"), (b"loc\nation", b"x"), (b"a:b", b"x"), (b"x", b"a\rb")]
)
def test_interim_sender_refuses_header_injection(header: tuple[bytes, bytes]) -> None:
    scope: dict[str, Any] = {}
    protocol, transport, _ = protocol_with(scope)
    with pytest.raises(ValueError):
        asyncio.run(protocol._interim_sender(scope)(104, [header]))
    assert transport.written == b""


def test_interim_sender_is_silent_once_the_final_response_started() -> None:
    scope: dict[str, Any] = {}
    protocol, transport, cycle = protocol_with(scope)
    cycle.response_started = True
    asyncio.run(protocol._interim_sender(scope)(104, [(b"upload-offset", b"1")]))
    assert transport.written == b""


def test_interim_sender_is_silent_for_another_request() -> None:
    protocol, transport, _ = protocol_with({"the": "next request"})
    asyncio.run(protocol._interim_sender({"an": "earlier request"})(104, [(b"upload-offset", b"1")]))
    assert transport.written == b""


def test_interim_sender_is_silent_after_disconnect_or_close() -> None:
    scope: dict[str, Any] = {}
    protocol, transport, cycle = protocol_with(scope)
    cycle.disconnected = True
    asyncio.run(protocol._interim_sender(scope)(104, []))
    cycle.disconnected = False
    transport.closing = True
    asyncio.run(protocol._interim_sender(scope)(104, []))
    assert transport.written == b""


# -- the protocol class in a real uvicorn server ----------------------------------------------------


class Probe:
    """An ASGI app that sends a 104 through the extension and echoes what it saw."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        #: X-Tag of a request -> body bytes it has received so far
        self.progress: dict[str, int] = {}
        #: X-Tag of a spliced request -> (bytes written, complete or None if stopped)
        self.spliced: dict[str, tuple[int, bool | None]] = {}
        #: X-Tag of a request spliced with a limit -> calls it took
        self.steps: dict[str, int] = {}
        #: X-Tag -> whether the request was offered the splice extension
        self.offered: dict[str, bool] = {}
        self.directory = tempfile.mkdtemp(prefix="pytusd-probe-")
        #: the read budget of the server the probe runs in
        self.budget = ReadBudget()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        extensions = scope.get("extensions") or {}
        await extensions[INTERIM_EXTENSION]["send"](104, [(b"x-probe", b"1")])
        headers = dict(scope["headers"])
        self.offered[headers.get(b"x-tag", b"").decode()] = SPLICE_EXTENSION in extensions
        if b"x-splice" in headers:
            await self._splice(extensions[SPLICE_EXTENSION]["into"], headers)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        slow = b"x-slow" in headers  # let reads pile up between receives
        tag = headers.get(b"x-tag", b"").decode()
        body, sizes = b"", []
        while True:
            message = await receive()
            body += message.get("body", b"")
            sizes.append(len(message.get("body", b"")))
            self.progress[tag] = len(body)
            if not message.get("more_body"):
                break
            if slow:
                await asyncio.sleep(0.005)
        self.seen.append(
            {
                "headers": [(n.decode(), v.decode()) for n, v in scope["headers"]],
                "trailers": [(n.decode(), v.decode()) for n, v in extensions[TRAILERS_EXTENSION]["get"]()],
                "body": body,
                "sizes": sizes,
            }
        )
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def path(self, tag: str) -> str:
        return os.path.join(self.directory, tag)

    async def _splice(self, into: Any, headers: dict[bytes, bytes]) -> None:
        """Splice the body into a file named by X-Tag; X-Stop-At: stop (cancel) once it holds that many."""
        tag = headers[b"x-tag"].decode()
        fd = os.open(self.path(tag), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        task = asyncio.current_task()
        assert task is not None
        watcher = None
        if b"x-stop-at" in headers:
            watcher = asyncio.get_running_loop().create_task(self._stop_at(tag, int(headers[b"x-stop-at"]), task))
        result: tuple[int, bool | None]
        try:
            if b"x-splice-limit" in headers:
                result = await self._splice_in_steps(into, fd, tag, headers)
            else:
                result = await into(fd)
        except asyncio.CancelledError:
            task.uncancel()
            result = (os.lseek(fd, 0, os.SEEK_CUR), None)
        finally:
            os.close(fd)
            if watcher is not None:
                watcher.cancel()
        self.spliced[tag] = result

    async def _splice_in_steps(self, into: Any, fd: int, tag: str, headers: dict[bytes, bytes]) -> tuple[int, bool]:
        """At most X-Splice-Limit bytes per call, as the S3 store moves a body into its part
        files; with X-Answer-After, stop calling (and answer) once that many arrived."""
        limit = int(headers[b"x-splice-limit"])
        answer_after = int(headers.get(b"x-answer-after", b"-1"))
        total, calls, moved = 0, 0, [0]
        while True:
            written, complete = await into(fd, limit, lambda n: moved.__setitem__(0, moved[0] + n))
            total, calls = total + written, calls + 1
            assert moved[0] == total == os.lseek(fd, 0, os.SEEK_CUR)
            if complete or written < limit or 0 <= answer_after <= total:
                self.steps[tag] = calls
                return total, complete

    async def _stop_at(self, tag: str, size: int, task: asyncio.Task[Any]) -> None:
        while os.path.getsize(self.path(tag)) < size:  # noqa: ASYNC110 - polls a file, no event to wait on
            await asyncio.sleep(0.002)
        task.cancel()


@contextlib.contextmanager
def running_server(app: Probe, http: Any, loop: str) -> Iterator[int]:
    """uvicorn serving ``app`` with the protocol factory ``http``, in a thread; yields its port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=http, loop=loop,
                            lifespan="off", log_level="warning", access_log=False)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module", params=["protocol-asyncio", "buffered-uvloop"])
def probe_server(request: pytest.FixtureRequest) -> Iterator[tuple[int, Probe]]:
    """The protocol class as mounted by tests, and the buffered wrapper the ``pytusd`` command serves,
    each with a read budget of the test's own (``app.budget``)."""
    app = Probe()
    protocol, loop = (PytusdHttpProtocol, "asyncio") if request.param == "protocol-asyncio" else (
        BufferedHttpProtocol, "uvloop")  # fmt: skip
    with running_server(app, functools.partial(protocol, budget=app.budget), loop) as port:
        yield port, app


@pytest.mark.parametrize(("protocol", "loop"), [(PytusdHttpProtocol, "asyncio"), (BufferedHttpProtocol, "uvloop")])
def test_the_bare_protocol_class_serves_too(protocol: Any, loop: str) -> None:
    """Given to uvicorn without a budget (as tests/integration mount it), each connection has its own."""
    app = Probe()
    tag = f"bare-{loop}"
    body = os.urandom(300_000)
    with running_server(app, protocol, loop) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Splice: 1\r\nX-Tag: %s\r\nContent-Length: %d\r\n\r\n"
                     % (tag.encode(), len(body)))  # fmt: skip
        sock.sendall(body)
        answer = read_answers(sock, 1)
        assert answer.startswith(b"HTTP/1.1 104 Upload Resumption Supported\r\n"), answer
        assert b"HTTP/1.1 200" in answer
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"1\r\na\r\n0\r\nX-Tail: 1\r\n\r\n")  # fmt: skip
        assert b"HTTP/1.1 200" in read_answers(sock, 1)
    assert app.spliced[tag] == (len(body), True)
    with open(app.path(tag), "rb") as f:
        assert f.read() == body
    assert app.seen[-1]["trailers"] == [("x-tail", "1")]


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\nok" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_protocol_sends_interim_before_final(probe_server: tuple[int, Probe]) -> None:
    port, _ = probe_server
    answer = raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    assert answer.startswith(b"HTTP/1.1 104 Upload Resumption Supported\r\nx-probe: 1\r\n\r\nHTTP/1.1 200 "), answer


def test_protocol_sends_no_interim_to_http_1_0(probe_server: tuple[int, Probe]) -> None:
    """RFC 9110 section 15.2: "a server MUST NOT send a 1xx response to an HTTP/1.0 client"."""
    port, _ = probe_server
    answer = raw(port, b"POST / HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_protocol_keeps_trailers_apart(probe_server: tuple[int, Probe]) -> None:
    port, app = probe_server
    request = (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: Upload-Checksum\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\nUpload-Checksum: sha1 AAAA\r\nX-Tail: 2\r\n\r\n"
    )
    answer = raw(port, request)
    assert b"HTTP/1.1 200" in answer, answer
    seen = app.seen[-1]
    assert seen["body"] == b"abcde"
    assert ("upload-checksum", "sha1 AAAA") in seen["trailers"]
    assert ("x-tail", "2") in seen["trailers"]
    assert all(name not in ("upload-checksum", "x-tail") for name, _ in seen["headers"]), seen


def test_protocol_trailers_do_not_leak_into_the_next_request(probe_server: tuple[int, Probe]) -> None:
    port, app = probe_server
    first = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-Tail: 1\r\n\r\n"
    second = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nX-Head: 2\r\n\r\nb"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(first)
        received = b""
        while received.count(b"\r\n\r\nok") < 1:
            received += sock.recv(65536)
        sock.sendall(second)
        while received.count(b"\r\n\r\nok") < 2:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    one, two = app.seen[-2:]
    assert one["trailers"] == [("x-tail", "1")]
    assert two["trailers"] == []
    assert ("x-head", "2") in two["headers"]


def test_protocol_large_body_arrives_whole(probe_server: tuple[int, Probe]) -> None:
    port, app = probe_server
    body = bytes(range(256)) * 4096  # 1 MiB: several reads, flow control on the way
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 65536):
            sock.sendall(body[i : i + 65536])
        received = b""
        with contextlib.suppress(TimeoutError):
            while b"\r\n\r\nok" not in received:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
    assert b"HTTP/1.1 200" in received
    assert app.seen[-1]["body"] == body


def test_protocol_hands_over_buffered_reads_one_by_one(probe_server: tuple[int, Probe]) -> None:
    """An app slower than the socket gets every read as it came, in order, never several joined."""
    port, app = probe_server
    body = bytes(range(256)) * 16384  # 4 MiB
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\nContent-Length: %d\r\n\r\n" % len(body))
        sock.sendall(body)
        received = b""
        while b"\r\n\r\nok" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    seen = app.seen[-1]
    assert seen["body"] == body
    assert max(seen["sizes"]) <= READ_BUFFER, f"reads were joined: {max(seen['sizes'])} bytes in one message"
    assert len(seen["sizes"]) > 4, "the body came in a few large pieces: the test did not exercise buffering"


def test_protocol_reads_what_a_stalled_fast_sender_sent(probe_server: tuple[int, Probe]) -> None:
    """A fast sender that stops mid-body: the app gets every byte sent so far, promptly.

    The receive low-water mark batches the wake-ups of a fast stream; it must not leave a stalled
    sender's last bytes in the kernel, where no HEAD sees them and a dropped connection loses them.
    """
    port, app = probe_server

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + LOW_WATER_STALL + 5
        while app.progress.get("stall") != count:
            assert time.monotonic() < deadline, f"the app got {app.progress.get('stall')} of {count} bytes"
            time.sleep(0.005)

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Tag: stall\r\nContent-Length: 1000000\r\n\r\n")
        sock.sendall(bytes(300_000))  # fast: large reads raise the low-water mark
        wait_for(300_000)
        sock.sendall(bytes(50_000))  # then less than the mark, and nothing more
        wait_for(350_000)


def test_read_size_shares_a_budget_among_arriving_bodies() -> None:
    budget = ReadBudget()
    for arriving, expected in [(0, READ_BUFFER), (1, READ_BUFFER), (32, READ_BUDGET // 32), (10_000, MIN_READ)]:
        budget.receiving = arriving
        assert budget.read_size() == expected


def test_read_budgets_are_apart_and_lend_one_buffer_each() -> None:
    """Each server has its own budget: its count sizes only its reads, its buffer serves its connections."""
    one, two = ReadBudget(), ReadBudget()
    one.receiving = 10_000
    assert one.read_size() == MIN_READ and two.read_size() == READ_BUFFER
    assert one.buffer() is one.buffer(), "a budget lends one buffer to all its connections"
    assert len(one.buffer()) == READ_BUFFER
    assert one.buffer().obj is not two.buffer().obj


def test_a_pickled_read_budget_arrives_fresh() -> None:
    """uvicorn's --workers pickles the protocol factory into each worker: each counts its own bodies."""
    budget = ReadBudget()
    budget.receiving = 3
    budget.buffer()
    factory = pickle.loads(pickle.dumps(functools.partial(BufferedHttpProtocol, budget=budget)))
    copy = factory.keywords["budget"]
    assert copy is not budget and copy.receiving == 0
    assert copy.buffer().obj is not budget.buffer().obj


def test_protocol_counts_arriving_bodies_back_to_zero(probe_server: tuple[int, Probe]) -> None:
    """Finished bodies, stalled ones whose connection closed, bodies cut short: none stays counted
    (a leak would shrink every later read to the minimum)."""
    port, app = probe_server
    assert b"HTTP/1.1 200" in raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + bytes(200_000))
        deadline = time.monotonic() + 5
        while app.budget.receiving == 0:
            assert time.monotonic() < deadline, "a body under way was not counted"
            time.sleep(0.005)
    deadline = time.monotonic() + 5
    while app.budget.receiving != 0:
        assert time.monotonic() < deadline, f"{app.budget.receiving} bodies still counted"
        time.sleep(0.005)


# -- splice: the body moves from the socket into a file without entering the process ---------------


def read_answers(sock: socket.socket, count: int) -> bytes:
    """Read until ``count`` final answers ("ok" bodies) arrived, or the peer closed."""
    received = b""
    while received.count(b"\r\n\r\nok") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def wait_until(predicate: Any, what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def answered_and_kept_open(sock: socket.socket) -> None:
    """The spliced request is answered on a connection that stays open and parses the next one."""
    first = read_answers(sock, 1)
    assert b"HTTP/1.1 200" in first and b"connection: close" not in first.lower(), first
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Tag: after\r\nContent-Length: 5\r\n\r\nafter")
    second = read_answers(sock, 1)
    assert b"HTTP/1.1 200" in second, second


def answered_and_closed(sock: socket.socket, why: str) -> None:
    """Answered with ``connection: close``, and then closed: the body's rest is never parsed."""
    answer = read_answers(sock, 1)
    assert b"HTTP/1.1 200" in answer and b"connection: close" in answer.lower(), answer
    sock.settimeout(5)
    try:
        rest = sock.recv(65536)
    except ConnectionResetError:
        rest = b""  # closed with the unread body still queued: the kernel answers RST, not FIN
    assert rest == b"", why


def assert_spliced_then_after(app: Probe, tag: str, body: bytes) -> None:
    with open(app.path(tag), "rb") as f:
        assert f.read() == body
    assert app.seen[-1]["body"] == b"after"


def test_splice_is_offered_only_for_a_body_with_a_content_length(probe_server: tuple[int, Probe]) -> None:
    port, app = probe_server
    raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nX-Tag: cl\r\nContent-Length: 3\r\n\r\nabc")
    raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nX-Tag: zero\r\nContent-Length: 0\r\n\r\n")
    raw(port, b"POST / HTTP/1.1\r\nHost: x\r\nX-Tag: chunked\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n")
    assert app.offered == app.offered | {"cl": True, "zero": False, "chunked": False}


@pytest.mark.parametrize("expect_continue", [False, True])
@pytest.mark.parametrize("size", [3 * 1024 * 1024 + 17, 40_000], ids=["spliced", "short-read"])
def test_splice_moves_the_body_into_the_file_and_the_connection_goes_on(
    probe_server: tuple[int, Probe], expect_continue: bool, size: int
) -> None:
    """Every byte lands in the file in order; the next request on the connection parses as usual
    (httptools never saw the spliced bytes, so a fresh parser must take over). A short rest is
    read instead of spliced."""
    port, app = probe_server
    tag = f"whole-{expect_continue}-{size}-{id(app)}"
    body = os.urandom(size)
    head = b"POST / HTTP/1.1\r\nHost: x\r\nX-Splice: 1\r\nX-Tag: %s\r\nContent-Length: %d\r\n" % (
        tag.encode(),
        len(body),
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if expect_continue:
            sock.sendall(head + b"Expect: 100-continue\r\n\r\n")
            received = b""
            while b"100 Continue" not in received:
                chunk = sock.recv(65536)
                assert chunk, received
                received += chunk
            sock.sendall(body)
        else:
            sock.sendall(head + b"\r\n" + body[:1000])
            time.sleep(0.05)  # the app starts with some body buffered, the rest is spliced
            sock.sendall(body[1000:])
        answered_and_kept_open(sock)
    assert app.spliced[tag] == (len(body), True)
    assert_spliced_then_after(app, tag, body)


def test_splice_of_a_body_that_arrived_with_its_headers(probe_server: tuple[int, Probe]) -> None:
    """A small body parsed whole, and a pipelined request behind it in the same read."""
    port, app = probe_server
    tag = f"small-{id(app)}"
    first = b"POST / HTTP/1.1\r\nHost: x\r\nX-Splice: 1\r\nX-Tag: %s\r\nContent-Length: 5\r\n\r\nhello" % tag.encode()
    second = b"POST / HTTP/1.1\r\nHost: x\r\nX-Tag: piped\r\nContent-Length: 3\r\n\r\nxyz"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(first + second)
        answers = read_answers(sock, 2)
    assert answers.count(b"HTTP/1.1 200") == 2, answers
    assert app.spliced[tag] == (5, True)
    with open(app.path(tag), "rb") as f:
        assert f.read() == b"hello"
    assert app.seen[-1]["body"] == b"xyz"


def test_splice_keeps_what_arrived_when_the_client_leaves(probe_server: tuple[int, Probe]) -> None:
    port, app = probe_server
    tag = f"gone-{id(app)}"
    sent = os.urandom(1024 * 1024 + 5)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Splice: 1\r\nX-Tag: %s\r\nContent-Length: 4000000\r\n\r\n" % tag.encode()
        )
        sock.sendall(sent)
        wait_until(lambda: os.path.exists(app.path(tag)) and os.path.getsize(app.path(tag)) == len(sent),
                   "the bytes sent did not reach the file")  # fmt: skip
    wait_until(lambda: tag in app.spliced, "the splice did not end when the client left")
    assert app.spliced[tag] == (len(sent), False)
    with open(app.path(tag), "rb") as f:
        assert f.read() == sent


def test_splice_stopped_midway_keeps_its_bytes_and_closes_the_connection(probe_server: tuple[int, Probe]) -> None:
    """A stop (another request wants the upload, shutdown) ends the splice between two moves;
    the parser lost count of the body, so the connection must close after the answer."""
    port, app = probe_server
    tag = f"stopped-{id(app)}"
    sent = os.urandom(1536 * 1024)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Splice: 1\r\nX-Tag: %s\r\nX-Stop-At: 1048576\r\n"
                     b"Content-Length: 4000000\r\n\r\n" % tag.encode())  # fmt: skip
        sock.sendall(sent)
        answered_and_closed(sock, "the connection stayed open after a body cut short")
    written, complete = app.spliced[tag]
    assert complete is None and 1048576 <= written <= len(sent)
    with open(app.path(tag), "rb") as f:
        assert f.read() == sent[:written]


def test_splice_stores_what_a_stalled_fast_sender_sent(probe_server: tuple[int, Probe]) -> None:
    """As with reads: a raised low-water mark must not hold a stalled sender's bytes back."""
    port, app = probe_server
    tag = f"stall-{id(app)}"

    def wait_for(count: int) -> None:
        wait_until(lambda: os.path.exists(app.path(tag)) and os.path.getsize(app.path(tag)) == count,
                   f"the file does not hold the {count} bytes sent", LOW_WATER_STALL + 5)  # fmt: skip

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nX-Splice: 1\r\nX-Tag: %s\r\nContent-Length: 1000000\r\n\r\n" % tag.encode()
        )
        sock.sendall(bytes(300_000))
        wait_for(300_000)
        sock.sendall(bytes(50_000))
        wait_for(350_000)


def _splice_refusing(refuse: Any) -> Any:
    """os.splice, but EINVAL (as for a descriptor without splice support) where ``refuse(src, dst)``."""
    real = os.splice

    def splice(src: int, dst: int, count: int, *args: Any, **kwargs: Any) -> int:
        if refuse(src, dst):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(src, dst, count, *args, **kwargs)

    return splice


def _assert_whole_body_stored_and_connection_reusable(port: int, app: Probe, tag: str, body: bytes) -> None:
    """Send ``body`` to the splicing probe after its headers: it must land whole, and the connection go on."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Splice: 1\r\nX-Tag: %s\r\nContent-Length: %d\r\n\r\n"
                     % (tag.encode(), len(body)))  # fmt: skip
        time.sleep(0.05)  # the body does not come with the headers: the splice path is taken
        sock.sendall(body)
        first = read_answers(sock, 1)
        assert b"HTTP/1.1 200" in first and b"connection: close" not in first.lower(), first
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Tag: after\r\nContent-Length: 5\r\n\r\nafter")
        assert b"HTTP/1.1 200" in read_answers(sock, 1)
    assert app.spliced[tag] == (len(body), True)
    with open(app.path(tag), "rb") as f:
        assert f.read() == body


def _is_file(fd: int) -> bool:
    return stat.S_ISREG(os.fstat(fd).st_mode)


@pytest.mark.parametrize(
    "refuse", [lambda src, dst: True, lambda src, dst: _is_file(dst)], ids=["socket-refuses", "file-refuses"]
)
def test_splice_falls_back_to_copying_where_the_kernel_refuses(
    probe_server: tuple[int, Probe], monkeypatch: pytest.MonkeyPatch, refuse: Any
) -> None:
    """A socket the kernel cannot splice from is read instead; bytes already in the pipe when the
    file refuses them are copied: none is lost either way, and the connection goes on."""
    port, app = probe_server
    monkeypatch.setattr(os, "splice", _splice_refusing(refuse))
    tag = f"refused-{id(refuse)}-{id(app)}"
    body = os.urandom(2 * 1024 * 1024 + 3)
    _assert_whole_body_stored_and_connection_reusable(port, app, tag, body)


@pytest.mark.parametrize("call", ["dup", "pipe2"])
def test_splice_without_descriptors_to_spare_reads_the_body(
    probe_server: tuple[int, Probe], monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """Out of file descriptors (EMFILE) for the pipe or the second socket descriptor: read instead."""
    port, app = probe_server

    def exhausted(*args: Any) -> Any:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, call, exhausted)
    tag = f"nofds-{call}-{id(app)}"
    body = os.urandom(1024 * 1024 + 9)
    _assert_whole_body_stored_and_connection_reusable(port, app, tag, body)


@pytest.mark.parametrize("size", [3 * 1024 * 1024 + 17, 40_000], ids=["spliced", "short-read"])
def test_splice_in_steps_moves_the_body_piece_by_piece_and_the_connection_goes_on(
    probe_server: tuple[int, Probe], size: int
) -> None:
    """With a limit per call (the S3 store's parts), the body moves over several calls, bytes
    parsed with the headers included, and the connection then serves the next request."""
    port, app = probe_server
    tag = f"steps-{size}-{id(app)}"
    body = os.urandom(size)
    limit = 700_001 if size > 100_000 else 9_999
    head = b"POST / HTTP/1.1\r\nHost: x\r\nX-Splice: 1\r\nX-Splice-Limit: %d\r\nX-Tag: %s\r\nContent-Length: %d\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head % (limit, tag.encode(), len(body)) + body[:30_000])
        time.sleep(0.05)  # the first call starts with bytes parsed already, more than one step's
        sock.sendall(body[30_000:])
        answered_and_kept_open(sock)
    assert app.spliced[tag] == (len(body), True)
    assert app.steps[tag] >= len(body) // limit
    assert_spliced_then_after(app, tag, body)


def test_an_answer_before_a_stepwise_splice_ends_closes_the_connection(probe_server: tuple[int, Probe]) -> None:
    """The app stops moving the body halfway and answers: the rest is still in the socket, so
    the connection closes after the answer (its rest must never be parsed as a request)."""
    port, app = probe_server
    tag = f"answered-{id(app)}"
    sent = os.urandom(2 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nX-Splice: 1\r\nX-Splice-Limit: 262144\r\nX-Answer-After: 524288\r\n"
        sock.sendall(head + b"X-Tag: %s\r\nContent-Length: 4000000\r\n\r\n" % tag.encode())
        sock.sendall(sent)
        answered_and_closed(sock, "the connection stayed open after an answer before the body's end")
    written, complete = app.spliced[tag]
    assert complete is False and written == 524288
    with open(app.path(tag), "rb") as f:
        assert f.read() == sent[:written]
