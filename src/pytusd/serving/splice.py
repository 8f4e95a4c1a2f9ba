"""Moving a request body from a socket into a file with splice(2), socket -> pipe -> file.

Read by the event loop, each body byte is copied three times: into the read buffer, into a
``bytes`` for the chunk, into the page cache. Spliced, it never enters the process: the pipe takes
references to the socket's pages (on loopback), and only the move into the file copies (into the
page cache). This module knows descriptors and an event loop, nothing of HTTP or uvicorn: the
protocol (``pytusd.serving.protocol``) decides when to splice and what to do with the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import fcntl
import os
from collections.abc import Callable

from pytusd.fdio import write_all

#: splice(2) exists (Linux); without it bodies are always read by the event loop.
CAN_SPLICE = hasattr(os, "splice") and hasattr(fcntl, "F_SETPIPE_SZ")

_SPLICE_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)

#: errno of splice(2) for a descriptor that does not support it
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})


class Outcome(enum.Enum):
    """How a splice ended (a cancelled one raises instead: the file position tells how far it got)."""

    #: all ``length`` bytes are in the file
    COMPLETE = "complete"
    #: the peer closed or reset its side first; what came is in the file
    CUT_SHORT = "cut short"
    #: the socket cannot be spliced from and nothing was taken from it: read it instead
    UNSUPPORTED = "unsupported"


class SplicePipe:
    """A pipe, and a second descriptor for the socket, for one body's splice.

    The second descriptor exists because uvloop refuses readers on a transport's own socket. Both
    cost descriptors that a busy server may not have: :meth:`open` then returns None and the
    caller reads the body instead (reading needs none).
    """

    __slots__ = ("pipe_in", "pipe_out", "size", "watched")

    def __init__(self, watched: int, pipe_out: int, pipe_in: int, size: int) -> None:
        self.watched = watched
        self.pipe_out = pipe_out
        self.pipe_in = pipe_in
        #: bytes the pipe holds: the most one move takes
        self.size = size

    @classmethod
    def open(cls, sock_fd: int, size: int) -> SplicePipe | None:
        """A pipe holding ``size`` bytes if the system lets it; None when out of descriptors."""
        try:
            watched = os.dup(sock_fd)
        except OSError:
            return None
        try:
            pipe_out, pipe_in = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            os.close(watched)
            return None
        try:
            return cls(watched, pipe_out, pipe_in, grow_pipe(pipe_in, size))
        except BaseException:
            for fd in (pipe_out, pipe_in, watched):
                os.close(fd)
            raise

    def close(self) -> None:
        os.close(self.pipe_out)
        os.close(self.pipe_in)
        os.close(self.watched)

    async def move(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        length: int,
        moved: Callable[[int], None],
        *,
        share: bool = False,
    ) -> tuple[int, Outcome]:
        """Move ``length`` bytes from the socket into ``fd`` at its position: (bytes written, outcome).

        ``moved(n)`` is called after each move, once its ``n`` bytes are in the file. With
        ``share``, other tasks run between two moves even while the socket has more: someone
        reads the file as it grows (an S3 part going up). Cancelled, it stops between two moves;
        the descriptors stay open until :meth:`close`.
        """
        written = 0
        left = length
        while left > 0:
            try:
                count = os.splice(self.watched, self.pipe_in, min(left, self.size), flags=_SPLICE_FLAGS)
            except BlockingIOError:
                await readable(loop, self.watched)
                continue
            except OSError as exc:
                # A socket the kernel cannot splice from (nothing taken yet: read it instead);
                # otherwise reset by the client, as good as gone.
                if written == 0 and exc.errno in _UNSUPPORTED:
                    return 0, Outcome.UNSUPPORTED
                return written, Outcome.CUT_SHORT
            if count == 0:
                return written, Outcome.CUT_SHORT  # the client closed its side before the body ended
            left -= count
            written += drain_pipe(self.pipe_out, fd, count)
            moved(count)
            if share:
                await asyncio.sleep(0)
        return written, Outcome.COMPLETE


async def readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    """Wait until ``fd`` has bytes to read (or is closed by the peer)."""
    waiter = loop.create_future()
    loop.add_reader(fd, _wake, waiter)
    try:
        await waiter
    finally:
        loop.remove_reader(fd)  # before the descriptor closes: epoll keys on it


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def grow_pipe(fd: int, size: int) -> int:
    """Make the pipe hold ``size`` bytes if the system lets us; return what it holds."""
    with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size or the user's pipe quota
        return fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)


def drain_pipe(pipe_out: int, fd: int, size: int) -> int:
    """Move ``size`` bytes that sit in the pipe into ``fd`` (at its position).

    A file the kernel cannot splice into gets them by read and write instead: they have left the
    socket already, so failing here would lose them.
    """
    done = 0
    while done < size:
        try:
            done += os.splice(pipe_out, fd, size - done, flags=getattr(os, "SPLICE_F_MOVE", 0))
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            done += write_all(fd, os.read(pipe_out, size - done))
    return size
