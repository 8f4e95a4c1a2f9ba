"""One writer per upload, with one worker and with ``--workers 2``, over real TCP connections.

A request that finds its upload locked asks the holder to stop: the holder ends its body, saves
what it received and releases, and the newcomer proceeds at once (not after ``--lock-timeout``).
The holder here is a PATCH whose client vanished without the server noticing: headers and part of
a big body were sent, then nothing, with the socket left open.

With two workers, the tests find out which worker accepted each connection (from the kernel's
socket tables in ``/proc``) and place the two requests on different workers, so the stop request
has to cross processes (``.stop`` files of the FileLocker) - or on the same worker on purpose.

The raw-connection and worker-placement helpers here are also used by ``test_workers.py`` and
``test_shutdown.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from tests.support.rawhttp import Connection, Response
from tests.support.server import ServerProcess
from tests.support.wait import wait_until

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = "application/offset+octet-stream"
LOCK_DIR = ".pytusd-locks"
#: Generous bound for "did not hang" (the default lock timeout is 20 s: a newcomer that waited
#: for it instead of stopping the holder fails this bound).
PROMPT = 10.0


# -- raw HTTP/1.1 connections --------------------------------------------------------------------


class RawConn(Connection):
    """A tus connection driven by hand (tests.support.rawhttp): a test can stop sending in the middle of a body."""

    def __init__(self, server: ServerProcess, timeout: float = 30.0) -> None:
        super().__init__(server, timeout)

    def send_head(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> bool:  # type: ignore[override]
        """A request head with Tus-Resumable and ``headers``."""
        host = f"{self.server.host}:{self.server.port}"
        return super().send_head(method, path, list({**TUS, **(headers or {})}.items()), host=host)

    def start_patch(self, path: str, offset: int, content_length: int, first: bytes = b"") -> None:
        """Send the head of a PATCH announcing ``content_length`` bytes, and ``first`` of them."""
        headers = {"Upload-Offset": str(offset), "Content-Type": OCTET, "Content-Length": str(content_length)}
        self.send_head("PATCH", path, headers)
        if first:
            assert self.send_body(first)

    def request(self, method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes = b"",  # type: ignore[override]
                timeout: float = PROMPT) -> Response:  # fmt: skip
        hdrs = dict(headers or {})
        if body or method in ("PATCH", "POST"):
            hdrs["Content-Length"] = str(len(body))
        self.send_head(method, path, hdrs)
        if body:
            self.send_body(body)
        reply = self.read_reply(timeout, method=method)
        assert reply is not None, f"{method} {path}: connection closed without a response"
        return reply


def http(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=TUS, timeout=30.0)


def create_upload(server: ServerProcess, length: int | None) -> str:
    """A new upload; returns its path (``/files/<id>``)."""
    headers = {"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"}
    with http(server) as client:
        response = client.post("/files/", headers=headers)
    assert response.status_code == 201, response.text
    return urlsplit(response.headers["location"]).path


def upload_id(path: str) -> str:
    return path.rsplit("/", 1)[1]


def head_offset(server: ServerProcess, path: str) -> int | None:
    """The offset HEAD reports; None for 404."""
    with http(server) as client:
        response = client.head(path)
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.status_code
    return int(response.headers["upload-offset"])


def wait_for_offset(server: ServerProcess, path: str, expected: int, timeout: float = PROMPT) -> None:
    """Poll HEAD until it reports ``expected``; it must never report more (unstored bytes)."""

    def reached() -> bool:
        seen = head_offset(server, path)
        assert seen is not None and seen <= expected, f"HEAD reported {seen}, only {expected} bytes were sent"
        return seen == expected

    wait_until(reached, timeout=timeout, interval=0.02, message=f"HEAD to report offset {expected}", server=server)


def data_path(server: ServerProcess, path: str) -> Path:
    return server.upload_dir / upload_id(path)


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# -- which worker serves a connection ------------------------------------------------------------


def server_pids(server: ServerProcess) -> list[int]:
    """The server's process and every process below it (uvicorn's workers)."""
    assert server.proc is not None
    pids, todo = [], [server.proc.pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        with contextlib.suppress(OSError):
            todo += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return pids


def _socket_inode(server_port: int, client_port: int) -> int:
    """Inode of the server side of our connection (0 until a worker accepted it)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                    return int(fields[9])
    return 0


def serving_pid(conn: RawConn, timeout: float = PROMPT) -> int:
    """The process that accepted ``conn`` (the worker that will serve its requests)."""

    def accepted_by() -> int | None:
        inode = _socket_inode(conn.server.port, conn.local_port)
        if inode:
            target = f"socket:[{inode}]"
            for pid in server_pids(conn.server):
                with contextlib.suppress(OSError):
                    for fd in os.listdir(f"/proc/{pid}/fd"):
                        with contextlib.suppress(OSError):
                            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                                return pid
        return None

    return wait_until(
        accepted_by, timeout=timeout, interval=0.005, message="the server process that accepted the connection"
    )


def connect(
    server: ServerProcess, *, on: int | None = None, not_on: int | None = None, timeout: float = 20.0
) -> RawConn:
    """A connection served by worker ``on`` (or by any worker but ``not_on``).

    The kernel hands each new connection to whichever worker accepts first, so this opens
    connections until one lands where wanted (a worker may also still be starting).
    """

    def landed() -> RawConn | None:
        conn = RawConn(server)
        pid = serving_pid(conn)
        if (on is None or pid == on) and (not_on is None or pid != not_on):
            conn.pid = pid  # type: ignore[attr-defined]
            return conn
        conn.close()
        return None

    wanted = f"worker {on}" if on is not None else f"a worker other than {not_on}"
    return wait_until(landed, timeout=timeout, interval=0.005, message=f"a connection served by {wanted}")


def worker_pids(server: ServerProcess, count: int) -> list[int]:
    """The ``count`` processes that serve connections (all of them must be up)."""
    seen: list[int] = []

    def all_seen() -> bool:
        with RawConn(server) as conn:
            pid = serving_pid(conn)
        if pid not in seen:
            seen.append(pid)
        return len(seen) == count

    wait_until(all_seen, timeout=20.0, interval=0, message=lambda: f"all {count} workers to accept (saw {seen})")
    return seen


def conn_pair(server: ServerProcess, placement: str) -> tuple[RawConn, RawConn]:
    """Two connections: on the same worker, or (``cross``) on two different workers."""
    first = connect(server)
    if placement == "cross":
        return first, connect(server, not_on=first.pid)  # type: ignore[attr-defined]
    return first, connect(server, on=first.pid)  # type: ignore[attr-defined]


# -- servers --------------------------------------------------------------------------------------

#: (workers, placement of the two requests)
SETUPS = [("1", "same"), ("2", "cross"), ("2", "same")]
SETUP_IDS = ["1-worker", "2-workers-cross", "2-workers-same"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    """One server with 1 worker and one with 2, default lock timeout (20 s), shared by the module."""
    started = {w: ServerProcess(tmp_path_factory.mktemp(f"w{w}") / "data", ["--workers", w]).start() for w in "12"}
    yield started
    for proc in started.values():
        proc.stop()


@pytest.fixture(params=SETUPS, ids=SETUP_IDS)
def setup(request: pytest.FixtureRequest, servers: dict[str, ServerProcess]) -> tuple[ServerProcess, str]:
    workers, placement = request.param
    return servers[workers], placement


def _assert_stopped(conn: RawConn, expected_offset: int) -> None:
    """The stalled request was answered (or its connection closed) promptly, not left hanging."""
    reply = conn.read_reply(PROMPT)
    if reply is not None:
        assert reply.status == 400, reply
        assert reply.offset == expected_offset, reply


def _assert_done_with(conn: RawConn, path: str) -> None:
    """The server is done with a stopped request's body, including the bytes the test sent last.

    It either closed the connection (the serving layer lost count of a spliced body), or it read the
    rest of the body, discarded it, and answers the next request on the same connection (a body that
    was read, as on S3). Either is an event that follows any effect of those bytes, so none of them
    can still land in the upload afterwards (a sleep would let a late write pass unnoticed).
    """
    conn.send_head("HEAD", path)
    reply = conn.read_reply(PROMPT, method="HEAD")
    assert reply is None or reply.status in (200, 404), reply


# -- the holder is asked to stop ------------------------------------------------------------------


def test_patch_stops_stalled_patch_and_continues(setup: tuple[ServerProcess, str]) -> None:
    server, placement = setup
    size, sent = 1_000_000, 300_000
    data = payload(size, 1)
    path = create_upload(server, size)
    stalled, newcomer = conn_pair(server, placement)
    with stalled, newcomer:
        stalled.start_patch(path, 0, size, data[:sent])
        wait_for_offset(server, path, sent)

        began = time.monotonic()
        reply = newcomer.request("PATCH", path, {"Upload-Offset": str(sent), "Content-Type": OCTET},
                                 data[sent:], timeout=PROMPT)  # fmt: skip
        elapsed = time.monotonic() - began
        assert reply.status == 204, reply
        assert reply.offset == size
        assert elapsed < PROMPT, f"newcomer took {elapsed:.1f} s: it waited instead of stopping the holder"
        _assert_stopped(stalled, sent)

        # The vanished client comes back and sends the rest of its body: none of it may land.
        stalled.send_body(payload(size - sent, 99))
        _assert_done_with(stalled, path)
    assert head_offset(server, path) == size
    assert data_path(server, path).read_bytes() == data


def test_stale_offset_after_stop_gets_409_and_all_sent_bytes_are_kept(setup: tuple[ServerProcess, str]) -> None:
    server, placement = setup
    size, sent = 500_000, 123_457
    data = payload(size, 2)
    path = create_upload(server, size)
    stalled, newcomer = conn_pair(server, placement)
    with stalled, newcomer:
        stalled.start_patch(path, 0, size, data[:sent])
        wait_for_offset(server, path, sent)
        reply = newcomer.request("PATCH", path, {"Upload-Offset": "0", "Content-Type": OCTET}, data)
        assert reply.status == 409, reply
        assert reply.offset == sent, "the stopped request must have saved every byte it had received"
        _assert_stopped(stalled, sent)
    assert head_offset(server, path) == sent
    assert data_path(server, path).read_bytes() == data[:sent]


def test_delete_stops_stalled_patch(setup: tuple[ServerProcess, str]) -> None:
    server, placement = setup
    size, sent = 800_000, 200_000
    path = create_upload(server, size)
    stalled, newcomer = conn_pair(server, placement)
    with stalled, newcomer:
        stalled.start_patch(path, 0, size, payload(sent, 3))
        wait_for_offset(server, path, sent)
        began = time.monotonic()
        reply = newcomer.request("DELETE", path)
        assert reply.status == 204, reply
        assert time.monotonic() - began < PROMPT
        reply_stalled = stalled.read_reply(PROMPT)
        assert reply_stalled is None or reply_stalled.status in (400, 404), reply_stalled
        stalled.send_body(b"x" * (size - sent))  # the rest of its body
        _assert_done_with(stalled, path)
    assert head_offset(server, path) is None
    assert not data_path(server, path).exists()
    assert not Path(str(data_path(server, path)) + ".info").exists()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_head_during_streaming_patch_reports_stored_bytes_and_does_not_stop_it(
    servers: dict[str, ServerProcess], workers: str
) -> None:
    server = servers[workers]
    size = 600_000
    data = payload(size, 4)
    path = create_upload(server, size)
    with RawConn(server) as writer:
        writer.start_patch(path, 0, size)
        for end in (1, 100_000, 250_001, 599_999):
            assert writer.send_body(data[writer.sent_body : end])
            wait_for_offset(server, path, end)
        # A HEAD must not have asked the writer to stop: a stop request across processes is a stop
        # file, which would still be there (the writer's reply below shows one within its process).
        assert not (server.upload_dir / LOCK_DIR / f"{upload_id(path)}.stop").exists()
        assert writer.send_body(data[writer.sent_body :])
        reply = writer.read_reply(PROMPT)
        assert reply is not None and reply.status == 204, reply
        assert reply.offset == size
    assert data_path(server, path).read_bytes() == data


def test_patch_after_stop_is_not_blocked_by_the_stopped_request_coming_back(setup: tuple[ServerProcess, str]) -> None:
    """Three rounds of vanished clients on one upload: each newcomer stops the previous one."""
    server, placement = setup
    size = 900_000
    data = payload(size, 5)
    path = create_upload(server, size)
    offset = 0
    conns: list[RawConn] = []
    try:
        first, second = conn_pair(server, placement)
        third = connect(server, on=first.pid)  # type: ignore[attr-defined]
        conns += [first, second, third]
        for conn, sent in ((first, 100_000), (second, 150_000), (third, 200_000)):
            conn.start_patch(path, offset, size - offset, data[offset : offset + sent])
            offset += sent
            wait_for_offset(server, path, offset)
        for conn, expected in ((first, 100_000), (second, 250_000)):
            _assert_stopped(conn, expected)
        with RawConn(server) as last:
            reply = last.request("PATCH", path, {"Upload-Offset": str(offset), "Content-Type": OCTET}, data[offset:])
        assert reply.status == 204, reply
        _assert_stopped(third, offset)
    finally:
        for conn in conns:
            conn.close()
    assert data_path(server, path).read_bytes() == data


@pytest.mark.parametrize("workers", ["1", "2"])
def test_stale_stop_file_does_not_stop_a_new_writer(servers: dict[str, ServerProcess], workers: str) -> None:
    server = servers[workers]
    size = 200_000
    data = payload(size, 6)
    path = create_upload(server, size)
    lock_dir = server.upload_dir / LOCK_DIR
    lock_dir.mkdir(exist_ok=True)
    stale = lock_dir / f"{upload_id(path)}.stop"
    stale.touch()  # left behind by a crashed process
    with RawConn(server) as writer:
        writer.start_patch(path, 0, size, data[:50_000])
        wait_for_offset(server, path, 50_000)
        # The writer holds the lock: the stale stop file is gone, so no later poll can find it.
        assert not stale.exists(), "the new writer left the stale stop file in place"
        assert writer.send_body(data[50_000:])
        reply = writer.read_reply(PROMPT)
    assert reply is not None and reply.status == 204, reply
    assert data_path(server, path).read_bytes() == data


# -- creation-with-upload holds the lock too -----------------------------------------------------


def _created_upload_path(server: ServerProcess, before: set[str]) -> str:
    found: list[str] = []

    def appeared() -> bool:
        found[:] = [p.name[: -len(".info")] for p in server.upload_dir.glob("*.info") if p.name not in before]
        return bool(found)

    wait_until(appeared, message="the POST to create its upload")
    assert len(found) == 1
    return f"/files/{found[0]}"


def test_patch_stops_stalled_creation_with_upload(setup: tuple[ServerProcess, str]) -> None:
    """A POST with a body (creation-with-upload) writes to its upload like a PATCH: the same rule.

    A later PATCH must stop it; otherwise the vanished POST keeps writing at its own position and
    overwrites bytes another request was acknowledged for.
    """
    server, placement = setup
    size, sent = 400_000, 100_000
    data = payload(size, 7)
    before = {p.name for p in server.upload_dir.glob("*.info")}
    poster, newcomer = conn_pair(server, placement)
    with poster, newcomer:
        poster.send_head("POST", "/files/", {"Upload-Length": str(size), "Content-Type": OCTET,
                                             "Content-Length": str(size)})  # fmt: skip
        assert poster.send_body(data[:sent])
        path = _created_upload_path(server, before)
        wait_for_offset(server, path, sent)
        reply = newcomer.request("PATCH", path, {"Upload-Offset": str(sent), "Content-Type": OCTET},
                                 data[sent : sent + 200_000])  # fmt: skip
        assert reply.status == 204, reply
        assert reply.offset == sent + 200_000
        # The vanished POST comes back and sends the rest of its body.
        poster.send_body(payload(size - sent, 77))
        answered = poster.read_reply(PROMPT)
        if answered is not None:  # stopped: told where the upload is and what of it was saved
            assert answered.status == 400, answered
            assert answered.offset == sent and answered.headers["location"].endswith(path), answered
        _assert_done_with(poster, path)
        stored = data_path(server, path).read_bytes()
        assert stored == data[: sent + 200_000], (
            f"bytes acknowledged to the PATCH were overwritten by the POST that still held no lock "
            f"(stored {len(stored)} bytes, first difference at "
            f"{next((i for i, (a, b) in enumerate(zip(stored, data, strict=False)) if a != b), None)})"
        )


# -- when the holder does not let go: 423 after --lock-timeout -------------------------------------


@contextlib.contextmanager
def foreign_lock_holder(server: ServerProcess, path: str) -> Iterator[Path]:
    """Hold the upload's flock from this process: a stuck worker that never reacts to stop files.

    With the file store the server locks the upload's data file itself (no lock file per upload).
    """
    lock_dir = server.upload_dir / LOCK_DIR
    lock_dir.mkdir(exist_ok=True)
    fd = os.open(server.upload_dir / upload_id(path), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield lock_dir / f"{upload_id(path)}.stop"
    finally:
        os.close(fd)


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
def test_holder_that_does_not_let_go_gives_423_after_lock_timeout(
    server_factory: Callable[..., ServerProcess], workers: str, method: str
) -> None:
    """The server's own requests always let go when asked; a stuck process holding the lock does not.

    Nothing reachable over HTTP holds an upload's lock without reacting to a stop request (a PATCH
    or POST body ends as soon as it is asked), so the stuck holder is simulated by holding the
    upload's ``flock`` from the test process, which never reads its stop file.
    """
    server = server_factory(["--workers", workers, "--lock-timeout", "1s"])
    path = create_upload(server, 10)
    headers = {"Upload-Offset": "0", "Content-Type": OCTET} if method == "PATCH" else {}
    body = b"0123456789" if method == "PATCH" else b""
    with foreign_lock_holder(server, path) as stop_file, RawConn(server) as conn:
        hdrs = dict(headers)
        if body:
            hdrs["Content-Length"] = str(len(body))
        conn.send_head(method, path, hdrs)
        conn.send_body(body)
        wait_until(stop_file.exists, timeout=5, message="the waiting request to ask the holder to stop")
        reply = conn.read_reply(PROMPT)
        assert reply is not None and reply.status == 423, reply
    assert not stop_file.exists(), "a request that gave up must withdraw its stop request"
    assert head_offset(server, path) == 0
    with RawConn(server) as conn:  # the stuck holder is gone: the upload is usable again
        reply = conn.request(method, path, headers, body)
    assert reply.status == 204, reply


def test_lock_timeout_zero_gives_423_but_the_holder_is_still_stopped(
    server_factory: Callable[..., ServerProcess],
) -> None:
    """``--lock-timeout 0``: a newcomer never waits (423 at once), yet its stop request is delivered."""
    server = server_factory(["--lock-timeout", "0"])
    size, sent = 300_000, 100_000
    data = payload(size, 8)
    path = create_upload(server, size)
    with RawConn(server) as stalled, RawConn(server) as newcomer:
        stalled.start_patch(path, 0, size, data[:sent])
        wait_for_offset(server, path, sent)
        reply = newcomer.request("PATCH", path, {"Upload-Offset": str(sent), "Content-Type": OCTET}, data[sent:])
        assert reply.status == 423, reply
        _assert_stopped(stalled, sent)
        reply = newcomer.request("PATCH", path, {"Upload-Offset": str(sent), "Content-Type": OCTET}, data[sent:])
        assert reply.status == 204, reply
    assert data_path(server, path).read_bytes() == data


# -- a worker that dies holding a lock --------------------------------------------------------------


def test_killed_worker_does_not_leave_the_upload_locked(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(["--workers", "2"])
    size, sent = 500_000, 150_000
    data = payload(size, 9)
    path = create_upload(server, size)
    stalled, other = conn_pair(server, "cross")
    with stalled, other:
        stalled.start_patch(path, 0, size, data[:sent])
        wait_for_offset(server, path, sent)
        os.kill(stalled.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        assert stalled.read_reply(PROMPT) is None
        began = time.monotonic()
        reply = other.request("PATCH", path, {"Upload-Offset": str(sent), "Content-Type": OCTET}, data[sent:])
        assert reply.status == 204, reply
        assert time.monotonic() - began < PROMPT
    assert data_path(server, path).read_bytes() == data


# -- many writers, one upload -------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2"])
def test_many_concurrent_vanished_writers_one_survivor(servers: dict[str, ServerProcess], workers: str) -> None:
    """Eight stalled writers arrive one after another: each stops the last; all their bytes are kept."""
    server = servers[workers]
    size = 2_000_000
    data = payload(size, 10)
    path = create_upload(server, size)
    conns: list[RawConn] = []
    offsets = []
    offset = 0
    try:
        for i in range(8):
            conn = RawConn(server)
            conns.append(conn)
            sent = 10_000 + 7_919 * i
            conn.start_patch(path, offset, size - offset, data[offset : offset + sent])
            offset += sent
            offsets.append(offset)
            wait_for_offset(server, path, offset)
        for conn, expected in zip(conns[:-1], offsets[:-1], strict=True):
            _assert_stopped(conn, expected)
        last = conns[-1]
        assert last.send_body(data[offset:])
        reply = last.read_reply(PROMPT)
        assert reply is not None and reply.status == 204, reply
    finally:
        for conn in conns:
            conn.close()
    assert data_path(server, path).read_bytes() == data
