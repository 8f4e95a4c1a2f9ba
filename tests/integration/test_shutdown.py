"""SIGTERM / SIGINT while PATCH bodies stream in: stop, save, answer, exit - promptly.

Uploads can take hours, so a server that waited for their bodies would only die at its graceful
timeout (--shutdown-timeout; 60 s here) or be killed by its supervisor, losing the answer. Instead
every body in flight is told to stop: what arrived is saved, the client gets a response (503 with
the saved offset) or a closed connection, and the process exits with status 0 long before that.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable

import pytest
from tests.integration.test_locking import (
    OCTET,
    PROMPT,
    RawConn,
    connect,
    create_upload,
    data_path,
    head_offset,
    payload,
    wait_for_offset,
    worker_pids,
)
from tests.support.rawhttp import Response
from tests.support.server import ServerProcess
from tests.support.wait import wait_until

#: The servers here wait up to 60 s for requests (--shutdown-timeout): exiting within this bound
#: shows the bodies were stopped rather than waited for.
EXIT_BOUND = 15.0
PATIENT = ["--shutdown-timeout", "60s"]
SIGNALS = [signal.SIGTERM, signal.SIGINT]
SIGNAL_IDS = ["SIGTERM", "SIGINT"]


def _signal_and_wait(server: ServerProcess, sig: int) -> tuple[int, float]:
    """Send ``sig`` to the server (the supervisor with --workers 2); its exit code and how long it took."""
    assert server.proc is not None
    began = time.monotonic()
    server.proc.send_signal(sig)
    try:
        code = server.proc.wait(EXIT_BOUND)
    except subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError(f"server still running {EXIT_BOUND} s after {signal.Signals(sig).name}") from None
    server.proc = None
    return code, time.monotonic() - began


def _assert_answered(reply: Response | None, saved: int) -> None:
    """A response or a closed connection (read_reply fails on a hang); a response tells the offset."""
    if reply is not None:
        assert reply.status == 503, reply
        assert reply.offset == saved, reply


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("sig", SIGNALS, ids=SIGNAL_IDS)
def test_signal_stops_stalled_patches_saves_them_and_exits_0(
    server_factory: Callable[..., ServerProcess], workers: str, sig: int
) -> None:
    server = server_factory([*PATIENT, "--workers", workers])
    pids = worker_pids(server, int(workers))
    size = 2_000_000
    uploads = []
    conns: list[RawConn] = []
    try:
        for i in range(4):
            path, sent, data = create_upload(server, size), 100_000 + 37_123 * i, payload(size, 40 + i)
            conn = connect(server, on=pids[i % len(pids)])  # with 2 workers: bodies in both
            conns.append(conn)
            conn.start_patch(path, 0, size, data[:sent])
            uploads.append((path, sent, data))
        for path, sent, _data in uploads:
            wait_for_offset(server, path, sent)

        assert server.proc is not None
        server.proc.send_signal(sig)
        replies = [conn.read_reply(PROMPT) for conn in conns]  # fails on a hang
        for reply, (_path, sent, _data) in zip(replies, uploads, strict=True):
            _assert_answered(reply, sent)
        code, took = _signal_and_wait(server, sig)  # already signalled: this only waits
    finally:
        for conn in conns:
            conn.close()
    assert took < EXIT_BOUND

    for path, sent, data in uploads:
        assert data_path(server, path).read_bytes() == data[:sent], "not every received byte was saved"
    restarted = server_factory([*PATIENT, "--workers", workers], upload_dir=server.upload_dir)
    for path, sent, data in uploads:
        assert head_offset(restarted, path) == sent
        with RawConn(restarted) as conn:
            reply = conn.request("PATCH", path, {"Upload-Offset": str(sent), "Content-Type": OCTET}, data[sent:])
        assert reply.status == 204 and reply.offset == size, reply
        assert data_path(restarted, path).read_bytes() == data
    assert code == 0, f"{signal.Signals(sig).name} with --workers {workers}: exit status {code}, expected 0"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_while_bodies_are_actively_streaming(
    server_factory: Callable[..., ServerProcess], workers: str
) -> None:
    """Clients still sending when the signal comes: the stored bytes are exactly a prefix of theirs."""
    server = server_factory([*PATIENT, "--workers", workers])
    pids = worker_pids(server, int(workers))
    size = 32 * 1024 * 1024
    data = payload(size, 50)
    paths = [create_upload(server, size) for _ in range(4)]
    conns = [connect(server, on=pids[i % len(pids)]) for i in range(len(paths))]
    stop_sending = threading.Event()

    def stream(conn: RawConn, path: str) -> None:
        conn.start_patch(path, 0, size)
        position = 0
        while position < size and not stop_sending.is_set():
            if not conn.send_body(data[position : position + 32 * 1024]):
                return
            position += 32 * 1024
            time.sleep(0.002)

    senders = [threading.Thread(target=stream, args=(c, p), daemon=True) for c, p in zip(conns, paths, strict=True)]
    try:
        for sender in senders:
            sender.start()
        for path in paths:  # every body is being written
            wait_until(
                lambda p=path: (head_offset(server, p) or 0) >= 100_000, timeout=PROMPT, interval=0.02, server=server,
                message=f"the upload {path} to progress",
            )  # fmt: skip
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        replies = [conn.read_reply(PROMPT) for conn in conns]
        code, took = _signal_and_wait(server, signal.SIGTERM)
    finally:
        stop_sending.set()
        for conn in conns:
            conn.close()
        for sender in senders:
            sender.join(PROMPT)
    assert took < EXIT_BOUND

    restarted = server_factory([*PATIENT, "--workers", workers], upload_dir=server.upload_dir)
    for conn, path, reply in zip(conns, paths, replies, strict=True):
        stored = data_path(server, path).read_bytes()
        assert 0 < len(stored) <= conn.sent_body
        assert stored == data[: len(stored)], "the saved bytes are not exactly what the client sent"
        _assert_answered(reply, len(stored))
        assert head_offset(restarted, path) == len(stored)
    assert code == 0, f"SIGTERM with --workers {workers}: exit status {code}, expected 0"


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_with_idle_and_finished_connections_exits_promptly(
    server_factory: Callable[..., ServerProcess], workers: str
) -> None:
    """Keep-alive connections with nothing in flight do not hold the shutdown up either."""
    server = server_factory([*PATIENT, "--workers", workers])
    path = create_upload(server, 5)
    idle = [RawConn(server) for _ in range(4)]
    try:
        reply = idle[0].request("PATCH", path, {"Upload-Offset": "0", "Content-Type": OCTET}, b"hello")
        assert reply.status == 204
        code, took = _signal_and_wait(server, signal.SIGTERM)
        for conn in idle:
            assert conn.read_reply(PROMPT) is None  # closed, nothing pending
    finally:
        for conn in idle:
            conn.close()
    assert took < EXIT_BOUND
    assert code == 0, f"SIGTERM with --workers {workers}: exit status {code}, expected 0"
