"""--network-timeout and --shutdown-timeout on a real server: clients that go silent are cut.

A body that stalls is stopped with what it sent saved and its lock released (the client, still
connected, gets a 500 with the offset and the connection closes); a request head that stalls or
trickles, a connection that never sends a request and an idle keep-alive connection are closed;
a graceful stop that a client holds up ends after --shutdown-timeout. The timeouts are short
(1 s); the bounds below only keep a broken server from hanging the tests.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.integration import ietf_helpers as ietf
from tests.integration.test_locking import (
    OCTET,
    RawConn,
    create_upload,
    data_path,
    head_offset,
    http,
    payload,
    wait_for_offset,
)
from tests.support.rawhttp import Connection, build_head
from tests.support.server import ServerProcess
from tests.support.wait import wait_until

TIMEOUT = "1s"
#: Anything the server must do "after the timeout" must have happened within this (a bound on hangs).
BOUND = 15.0
#: A holder keeps its lock against newer requests (they get 423 at once): only the timeout can
#: release it, so a newer PATCH that succeeds shows that it did.
NO_HANDOVER = ["--lock-grace", "1h", "--lock-timeout", "0"]
#: Exit within --shutdown-timeout plus this: less than the default 10 s, which would not count.
SHUTDOWN_SLACK = 8.0


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory(["--network-timeout", TIMEOUT, *NO_HANDOVER])


@pytest.mark.parametrize(
    ("size", "sent"),
    [(1_000_000, 300_000), (50_000, 20_123)],
    ids=["spliced", "read"],  # a short body is read by the parser, a long one spliced into the file
)
def test_stalled_body_is_stopped_saved_and_its_upload_resumable(server: ServerProcess, size: int, sent: int) -> None:
    data = payload(size, 7)
    path = create_upload(server, size)
    with RawConn(server) as stalled:
        stalled.start_patch(path, 0, size, data[:sent])
        # The client stays connected and silent; the server stops the body and answers.
        reply = stalled.read_reply(BOUND, method="PATCH")
        assert reply is not None, "the stalled client got no answer"
        assert reply.status == 500, reply
        assert reply.offset == sent, reply
        assert reply.header("connection") == "close", reply
        assert stalled.closed_by_peer(BOUND)

        assert head_offset(server, path) == sent
        if server.backend == "file":
            assert data_path(server, path).read_bytes() == data[:sent]
        # The lock is free: with handover off, only the stop can have released it.
        with RawConn(server) as other:  # opened now: an idle connection would be closed too
            resumed = other.request("PATCH", path, {"Upload-Offset": str(sent), "Content-Type": OCTET}, data[sent:])
        assert resumed.status == 204, resumed
        assert resumed.offset == size
    if server.backend == "file":
        assert data_path(server, path).read_bytes() == data


def test_stalled_checksummed_chunk_is_discarded_and_answered_500_not_460(server: ServerProcess) -> None:
    """A chunk with a checksum is all or nothing; cut short by the timeout it is dropped, and the
    answer says "resume" (500), not "your data is corrupt" (460)."""
    size, sent = 100_000, 40_000
    data = payload(size, 9)
    path = create_upload(server, size)
    digest = base64.b64encode(hashlib.sha1(data).digest()).decode()
    with RawConn(server) as conn:
        conn.send_head("PATCH", path, {"Upload-Offset": "0", "Content-Type": OCTET, "Content-Length": str(size),
                                       "Upload-Checksum": f"sha1 {digest}"})  # fmt: skip
        assert conn.send_body(data[:sent])
        reply = conn.read_reply(BOUND, method="PATCH")
    assert reply is not None and reply.status == 500, reply
    assert reply.offset == 0, reply
    assert head_offset(server, path) == 0


def test_stalled_creation_with_upload_keeps_what_it_sent(server: ServerProcess) -> None:
    size, sent = 200_000, 77_777
    data = payload(size, 8)
    with RawConn(server) as conn:
        headers = {"Upload-Length": str(size), "Content-Type": OCTET, "Content-Length": str(size)}
        conn.send_head("POST", "/files/", headers)
        assert conn.send_body(data[:sent])
        reply = conn.read_reply(BOUND, method="POST")
    assert reply is not None and reply.status == 500, reply
    location = reply.header("location")
    assert location is not None and reply.offset == sent, reply
    path = "/files/" + location.rsplit("/", 1)[1]
    wait_for_offset(server, path, sent)


def test_stalled_ietf_append_is_stopped_and_tells_its_offset(server: ServerProcess) -> None:
    size, sent = 100_000, 30_001
    path, _ = ietf.create(server, 8)
    with Connection(server) as conn:
        headers = ietf.append_headers(8, 0, True)
        assert conn.send(build_head("PATCH", path, headers, content_length=size) + b"z" * sent)
        reply = conn.read_response("PATCH", timeout=BOUND)  # after any 104 progress responses
    assert reply.status == 500, reply
    assert reply.offset == sent, reply
    assert ietf.offset_of(ietf.head(server, path, 8)) == sent


def test_body_that_keeps_sending_slowly_is_not_stopped(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(["--network-timeout", "3s"])
    size = 15
    path = create_upload(server, size)
    with RawConn(server) as conn:
        conn.start_patch(path, 0, size)
        for i in range(size):  # a byte every 0.3 s: 4.5 s in all, never near 3 s quiet
            assert conn.send_body(bytes([i]))
            time.sleep(0.3)
        reply = conn.read_reply(BOUND, method="PATCH")
    assert reply is not None and reply.status == 204, reply
    assert head_offset(server, path) == size


def test_stalled_request_head_gets_408_and_is_closed(server: ServerProcess) -> None:
    with RawConn(server) as conn:
        assert conn.send(b"PATCH /files/whatever HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n")
        reply = conn.read_reply(BOUND)
        assert reply is not None and reply.status == 408, reply
        assert conn.closed_by_peer(BOUND)


def test_trickling_request_head_is_cut(server: ServerProcess) -> None:
    """Slowloris: a byte now and then resets no timer; the whole head has the timeout."""
    with RawConn(server) as conn:
        assert conn.send(b"GET /files/ HTTP/1.1\r\nHost: localhost\r\n")
        deadline = time.monotonic() + BOUND
        while conn.send(b"X-Pad: 1\r\n"):
            assert time.monotonic() < deadline, "a trickling request head was never cut"
            if conn.readable(0.2):
                break  # the 408 (or the close) is here
        reply = conn.read_reply(BOUND)
        assert reply is None or reply.status == 408, reply


def test_connection_that_sends_nothing_is_closed(server: ServerProcess) -> None:
    with RawConn(server) as conn:
        assert conn.closed_by_peer(BOUND)


def test_idle_keep_alive_connection_is_closed(server: ServerProcess) -> None:
    with RawConn(server) as conn:
        assert conn.request("OPTIONS", "/files/").status == 200
        assert conn.closed_by_peer(BOUND)


def test_body_answered_without_being_read_cannot_hold_the_connection(server: ServerProcess) -> None:
    with RawConn(server) as conn:
        conn.start_patch("/files/doesnotexist", 0, 1_000_000, b"x" * 1000)
        reply = conn.read_reply(BOUND, method="PATCH")
        assert reply is not None and reply.status == 404, reply
        assert conn.closed_by_peer(BOUND)  # the rest of the body never came


def _upload_of(server: ServerProcess, size: int) -> str:
    path = create_upload(server, size)
    with http(server) as client:
        done = client.patch(path, content=b"\0" * size, headers={"Upload-Offset": "0", "Content-Type": OCTET})
        assert done.status_code == 204, done.text
    return path


def _start_unread_download(server: ServerProcess, path: str) -> socket.socket:
    """A GET whose client reads one byte of the response, then nothing: the server's writes stall."""
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    reader.connect((server.host, server.port))
    reader.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n\r\n".encode())
    assert reader.recv(1)
    return reader


def test_download_nobody_reads_is_aborted(server: ServerProcess) -> None:
    path = _upload_of(server, 32 * 1024 * 1024)  # far more than the kernel buffers hold
    with _start_unread_download(server, path) as reader:
        # The server resets the connection; the client sees it without reading (which would let it go on).
        reset = lambda: reader.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNRESET  # noqa: E731
        wait_until(reset, timeout=BOUND, message="the server to abort the stalled download", server=server)


def test_shutdown_timeout_bounds_a_stop_held_up_by_clients(server_factory: Callable[..., ServerProcess]) -> None:
    """A download to a client that reads nothing would hold a graceful stop for ever; a stalled
    body is stopped at once. The process must exit soon after --shutdown-timeout."""
    server = server_factory(["--shutdown-timeout", "1s"])  # the network timeout (60 s) cuts nothing here
    path = _upload_of(server, 32 * 1024 * 1024)
    stalled_path = create_upload(server, 1_000_000)
    with _start_unread_download(server, path), RawConn(server) as stalled:
        stalled.start_patch(stalled_path, 0, 1_000_000, b"y" * 100_000)
        wait_for_offset(server, stalled_path, 100_000)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(1 + SHUTDOWN_SLACK)
        except subprocess.TimeoutExpired:
            raise AssertionError("the server did not exit after --shutdown-timeout") from None
        finally:
            server.kill()
    assert code == 0


def test_a_network_timeout_of_zero_is_refused(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pytusd", "--upload-dir", str(tmp_path), "--network-timeout", "0"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2 and "--network-timeout" in out.stderr, out.stderr
