"""The splice loop (``pytusd.serving.splice``) on its own: a socketpair, a temp file, an event loop.

The protocol's tests (test_serving.py) drive the same loop through uvicorn over TCP; these pin the
loop's own contract: what it moves, where it stops, and its fallbacks, without HTTP.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from pytusd.serving import splice
from pytusd.serving.splice import Outcome, SplicePipe

pytestmark = pytest.mark.skipif(not splice.CAN_SPLICE, reason="no splice(2) here")

#: Bound on any wait in these tests: a bug shows as a failure, not a hang.
TIMEOUT = 10


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(server side, non-blocking as uvloop keeps it; client side)."""
    server, client = socket.socketpair()
    server.setblocking(False)
    with server, client:
        yield server, client


@pytest.fixture
def target() -> Iterator[int]:
    with tempfile.TemporaryFile() as f:
        yield f.fileno()


def contents(fd: int) -> bytes:
    with open(os.dup(fd), "rb") as f:
        f.seek(0)
        return f.read()


def send_in_thread(sock: socket.socket, data: bytes, *, close: bool = False) -> threading.Thread:
    def run() -> None:
        sock.sendall(data)
        if close:
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def run(coro: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(coro(), TIMEOUT))


def open_pipe(sock: socket.socket, size: int = 1024 * 1024) -> SplicePipe:
    pipe = SplicePipe.open(sock.fileno(), size)
    assert pipe is not None
    return pipe


def assert_closed(*fds: int) -> None:
    for fd in fds:
        with pytest.raises(OSError) as info:
            os.fstat(fd)
        assert info.value.errno == errno.EBADF


@pytest.mark.parametrize("pipe_size", [64 * 1024, 1024 * 1024], ids=["many-moves", "large-pipe"])
def test_moves_the_whole_body_and_not_a_byte_more(
    pair: tuple[socket.socket, socket.socket], target: int, pipe_size: int
) -> None:
    server, client = pair
    body = os.urandom(3 * 1024 * 1024 + 17)
    moves: list[int] = []
    pipe = open_pipe(server, pipe_size)
    sender = send_in_thread(client, body + b"NEXT REQUEST")

    async def main() -> tuple[int, Outcome]:
        try:
            return await pipe.move(asyncio.get_running_loop(), target, len(body), moves.append)
        finally:
            pipe.close()

    assert run(main) == (len(body), Outcome.COMPLETE)
    sender.join(TIMEOUT)
    assert contents(target) == body
    assert sum(moves) == len(body) and all(0 < m <= pipe.size for m in moves)
    server.setblocking(True)
    server.settimeout(TIMEOUT)
    assert server.recv(100) == b"NEXT REQUEST", "the splice took bytes past the body"
    assert_closed(pipe.watched, pipe.pipe_in, pipe.pipe_out)


def test_writes_at_the_file_position(pair: tuple[socket.socket, socket.socket], target: int) -> None:
    server, client = pair
    os.write(target, b"head:")
    pipe = open_pipe(server)
    send_in_thread(client, b"tail")

    async def main() -> tuple[int, Outcome]:
        try:
            return await pipe.move(asyncio.get_running_loop(), target, 4, lambda n: None)
        finally:
            pipe.close()

    assert run(main) == (4, Outcome.COMPLETE)
    assert contents(target) == b"head:tail"


def test_a_body_cut_short_keeps_what_came(pair: tuple[socket.socket, socket.socket], target: int) -> None:
    server, client = pair
    sent = os.urandom(700_000)
    pipe = open_pipe(server)
    send_in_thread(client, sent, close=True)  # the peer goes away before the body's end

    async def main() -> tuple[int, Outcome]:
        try:
            return await pipe.move(asyncio.get_running_loop(), target, 4_000_000, lambda n: None)
        finally:
            pipe.close()

    assert run(main) == (len(sent), Outcome.CUT_SHORT)
    assert contents(target) == sent


def test_cancelled_it_stops_between_moves(pair: tuple[socket.socket, socket.socket], target: int) -> None:
    """Cancelled while waiting for more: it raises, everything moved so far is in the file."""
    server, client = pair
    sent = os.urandom(300_000)
    pipe = open_pipe(server)
    moved: list[int] = []
    send_in_thread(client, sent)

    async def main() -> None:
        task = asyncio.create_task(pipe.move(asyncio.get_running_loop(), target, 4_000_000, moved.append))
        while sum(moved) < len(sent):  # noqa: ASYNC110 - counts moves, no event to wait on
            await asyncio.sleep(0.002)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        pipe.close()

    run(main)
    assert contents(target) == sent
    assert os.lseek(target, 0, os.SEEK_CUR) == len(sent), "the file position tells how far it got"
    assert_closed(pipe.watched, pipe.pipe_in, pipe.pipe_out)


def _refusing(monkeypatch: pytest.MonkeyPatch, refuse: Callable[[int, int], bool]) -> None:
    """os.splice, but EINVAL (as for a descriptor without splice support) where ``refuse(src, dst)``."""
    real = os.splice

    def fake(src: int, dst: int, count: int, *args: Any, **kwargs: Any) -> int:
        if refuse(src, dst):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(src, dst, count, *args, **kwargs)

    monkeypatch.setattr(os, "splice", fake)


def test_a_socket_that_cannot_splice_is_left_untouched(
    pair: tuple[socket.socket, socket.socket], target: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UNSUPPORTED, nothing taken: the caller reads the whole body from the socket instead."""
    server, client = pair
    body = os.urandom(100_000)
    client.sendall(body)
    pipe = open_pipe(server)
    _refusing(monkeypatch, lambda src, dst: src == pipe.watched)

    async def main() -> tuple[int, Outcome]:
        try:
            return await pipe.move(asyncio.get_running_loop(), target, len(body), lambda n: None)
        finally:
            pipe.close()

    assert run(main) == (0, Outcome.UNSUPPORTED)
    assert contents(target) == b""
    server.setblocking(True)
    server.settimeout(TIMEOUT)
    received = b""
    while len(received) < len(body):
        received += server.recv(len(body) - len(received))
    assert received == body


def test_a_file_that_cannot_splice_gets_the_pipe_copied(
    pair: tuple[socket.socket, socket.socket], target: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes already in the pipe have left the socket: they are read and written, none lost."""
    server, client = pair
    body = os.urandom(2 * 1024 * 1024 + 3)
    _refusing(monkeypatch, lambda src, dst: stat.S_ISREG(os.fstat(dst).st_mode))
    pipe = open_pipe(server, 64 * 1024)
    send_in_thread(client, body)

    async def main() -> tuple[int, Outcome]:
        try:
            return await pipe.move(asyncio.get_running_loop(), target, len(body), lambda n: None)
        finally:
            pipe.close()

    assert run(main) == (len(body), Outcome.COMPLETE)
    assert contents(target) == body


@pytest.mark.parametrize("call", ["dup", "pipe2"])
def test_out_of_descriptors_there_is_no_pipe_and_nothing_leaks(
    pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    """EMFILE for the second socket descriptor or the pipe: None (read instead), no descriptor left open."""
    server, _ = pair
    before = set(os.listdir("/proc/self/fd"))

    def exhausted(*args: Any) -> Any:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, call, exhausted)
    assert SplicePipe.open(server.fileno(), 1024 * 1024) is None
    monkeypatch.undo()
    assert set(os.listdir("/proc/self/fd")) == before


def test_grow_pipe_reports_what_the_pipe_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe_out, pipe_in = os.pipe()
    try:
        assert splice.grow_pipe(pipe_in, 256 * 1024) == 256 * 1024
        real = fcntl.fcntl

        def refusing(fd: int, cmd: int, *args: Any) -> Any:
            if cmd == fcntl.F_SETPIPE_SZ:  # above pipe-max-size, or over the user's pipe quota
                raise OSError(errno.EPERM, "Operation not permitted")
            return real(fd, cmd, *args)

        monkeypatch.setattr(fcntl, "fcntl", refusing)
        assert splice.grow_pipe(pipe_in, 1024 * 1024) == 256 * 1024, "the pipe keeps its size, and says so"
    finally:
        os.close(pipe_out)
        os.close(pipe_in)
