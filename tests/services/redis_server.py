"""A private, non-persistent `redis-server` on loopback for tests."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from . import ServiceError, find_free_port, is_port_clash, require_executable, stop_process, tail, wait_until

__all__ = ["RedisServer"]


class RedisServer:
    """Debian's `redis-server` on 127.0.0.1:<free port>, state in a temp dir.

    Usage::

        with RedisServer() as server:
            client = redis.Redis.from_url(server.url)
    """

    def __init__(self, *, startup_timeout: float = 10.0, attempts: int = 3) -> None:
        self.startup_timeout = startup_timeout
        self.attempts = attempts
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self.startup_seconds: float | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise ServiceError("RedisServer is not running")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        if self._tmp is None:
            raise ServiceError("RedisServer is not running")
        return Path(self._tmp.name) / "redis.log"

    @property
    def name(self) -> str:
        return f"redis-server :{self._port}"

    def log(self) -> str:
        """Tail of the server's log (for the report of a failing test)."""
        return tail(self.log_path) if self._tmp is not None else "(stopped)"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING.

        Retries on a new port if the probed free port got taken by someone
        else before redis bound it; other failures raise at once.
        """
        if self._proc is not None:
            return self
        binary = require_executable("redis-server")
        began = time.monotonic()
        self.stop()  # the directory of a killed server: start() begins afresh (restart() reuses it)
        self._tmp = tempfile.TemporaryDirectory(prefix="pytusd-redis-")
        for attempt in range(1, self.attempts + 1):
            try:
                self._start_once(binary)
            except ServiceError as exc:
                self._stop_proc()
                if attempt == self.attempts or not is_port_clash(str(exc)):
                    self.stop()
                    raise
                continue
            self.startup_seconds = time.monotonic() - began
            break
        return self

    def kill(self) -> None:
        """SIGKILL the server (a crash) but keep its port and directory for :meth:`restart`."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def restart(self) -> RedisServer:
        """Start again on the same port, so clients keep their URL (kills a running server first).

        The new server is empty: nothing is kept on disk, as in a Redis without
        persistence that crashed. Fails if someone else took the port meanwhile.
        """
        if self._tmp is None or self._port is None:
            raise ServiceError("RedisServer.restart() needs a server that was started")
        self.kill()
        self._start_once(require_executable("redis-server"), self._port)
        return self

    def _start_once(self, binary: str, port: int | None = None) -> None:
        port = port or find_free_port()
        workdir = self.log_path.parent
        args = [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", str(workdir),
            "--save", "",  # no RDB snapshots
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", "",  # log to stdout, which goes to redis.log
            "--databases", "16",
            "--maxmemory", "256mb",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self._port = port
        try:
            wait_until(
                lambda: _ping(port),
                timeout=self.startup_timeout,
                what=f"redis-server on port {port}",
                alive=self._died,
            )
        except ServiceError as exc:
            raise ServiceError(f"{exc}\n--- redis.log ---\n{tail(self.log_path)}") from None

    def _died(self) -> str | None:
        if self._proc is not None and (code := self._proc.poll()) is not None:
            return f"exited with code {code}"
        return None

    def _stop_proc(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None
        self._port = None

    def stop(self) -> None:
        """Stop the server and delete its directory (idempotent)."""
        self._stop_proc()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _ping(port: int) -> bool:
    """Raw RESP PING: no client retries/backoff, so a dead server fails fast."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
