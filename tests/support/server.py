"""Starting servers for tests: the pytusd process (:class:`ServerProcess`) and the one start loop.

:func:`launch` starts a process that logs to a file and waits until it serves; :func:`wait_for_start`
is its waiting half, also used by servers that run in a thread (hook tests) and by the throw-away
services (tests/services). Started servers are remembered per test: tests/conftest.py appends
their log tails to the report of a failing test (:func:`logs_of_current_test`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import httpx

from tests.support.ports import free_port
from tests.support.wait import WaitTimeout, wait_until

#: The store every server of this test session uses: "file" (default), "s3", "gcs" or "azure"
#: (see tests/conftest.py).
_backend = os.environ.get("PYTUSD_TEST_STORE", "file")
#: The ``Storage.Type`` a server of each store reports to hooks (tusd's names).
STORE_TYPES = {"file": "filestore", "s3": "s3store", "gcs": "gcsstore", "azure": "azurestore"}


def current_backend() -> str:
    return _backend


def _backend_args_and_env() -> tuple[list[str], dict[str, str]]:
    """Flags and environment that put a new server's uploads on the current store."""
    if _backend == "file":
        return [], {}
    if _backend == "gcs":
        from tests.integration.gcs_helpers import backend_args_and_env

        return backend_args_and_env()
    if _backend == "azure":
        from tests.integration.azure_helpers import azure_env, azure_flags, shared_azurite, unique_prefix

        azurite = shared_azurite()
        return azure_flags(azurite, unique_prefix()), azure_env(azurite)
    from tests.integration.s3_helpers import aws_env, s3_flags, shared_swift, unique_prefix

    swift = shared_swift()
    return s3_flags(swift, unique_prefix()), aws_env(swift)


class ServerStartError(RuntimeError):
    """A server did not come up: it exited, or did not serve in time (the message has its log tail)."""


# -- the start loop ---------------------------------------------------------------------------


def wait_for_start(
    ready: Callable[[], object],
    *,
    what: str,
    timeout: float,
    alive: Callable[[], str | None] | None = None,
    log: Callable[[], str] | None = None,
    error: type[Exception] = ServerStartError,
    interval: float = 0.05,
) -> None:
    """Poll ``ready`` until it is true; raise ``error`` (with ``log()``) if ``alive`` reports a death
    or ``timeout`` passes."""
    try:
        wait_until(ready, timeout=timeout, interval=interval, message=what, alive=alive)
    except WaitTimeout as exc:
        detail = str(exc)
        if log is not None:
            detail += f"\n--- log tail ---\n{log()}"
        raise error(detail) from None


def exited(proc: subprocess.Popen[Any]) -> Callable[[], str | None]:
    """An ``alive`` check for :func:`wait_for_start`: the reason once ``proc`` has exited."""
    return lambda: None if proc.poll() is None else f"exited with {proc.returncode}"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def answers(url: str, method: str = "OPTIONS", status: int = 200, *, verify: bool = True) -> Callable[[], bool]:
    """A ``ready`` check: ``method url`` answers ``status`` (``verify``: the TLS certificate)."""

    def check() -> bool:
        try:
            return httpx.request(method, url, timeout=1.0, verify=verify).status_code == status
        except httpx.HTTPError:
            return False

    return check


def read_tail(path: Path, chars: int = 5000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def launch(
    cmd: Sequence[str],
    *,
    log_path: Path,
    ready: Callable[[], object],
    what: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with stdout and stderr appended to ``log_path``; return once ``ready()``.

    A process that exits or does not get ready in time is killed (with its children) and
    :class:`ServerStartError` names its exit code and log tail.
    """
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        wait_for_start(ready, what=what, timeout=timeout, alive=exited(proc), log=lambda: read_tail(log_path))
    except ServerStartError:
        kill_tree(proc.pid)
        proc.wait()
        raise
    return proc


# -- log tails of failing tests -----------------------------------------------------------------


class Logged(Protocol):
    def log(self) -> str: ...


#: Servers that are running, and the servers a test met (running at its start, or started in it).
_running: dict[int, Logged] = {}
_met: dict[int, Logged] = {}


def track(server: Logged) -> None:
    """Remember a started server: its log tail is shown if the current test fails."""
    _running[id(server)] = server
    _met[id(server)] = server


def untrack(server: Logged) -> None:
    """A server stopped: later tests no longer show its log (the current one still does)."""
    _running.pop(id(server), None)


def begin_test() -> None:
    """A test starts: it meets the servers running now (module fixtures) and those it starts."""
    _met.clear()
    _met.update(_running)


def logs_of_current_test() -> list[tuple[str, str]]:
    """(name, log tail) of every server the current test met."""
    return [(getattr(s, "name", type(s).__name__), s.log()) for s in _met.values()]


# -- pytusd -------------------------------------------------------------------------------------


class ServerProcess:
    """``python -m pytusd`` with the given flags, started and stopped by the tests.

    The upload directory survives :meth:`kill` and :meth:`restart`, so tests can check what a
    crashed server left behind.
    """

    def __init__(self, upload_dir: Path, args: Sequence[str] = (), *, env: dict[str, str] | None = None) -> None:
        self._dir = upload_dir
        self.backend = _backend
        backend_args, backend_env = _backend_args_and_env()
        self.args = [*backend_args, *args]
        self.env = {**backend_env, **(env or {})}
        self.port = free_port()
        self.host = "127.0.0.1"
        self.scheme = "https" if "--tls-certificate" in self.args else "http"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = upload_dir.parent / f"{upload_dir.name}-server.log"

    @property
    def upload_dir(self) -> Path:
        """Where a file-store server keeps uploads; a test that looks there is file-store only."""
        if self.backend != "file":
            import pytest

            pytest.skip("inspects the file store's files on disk")
        return self._dir

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The creation URL (base path of uploads)."""
        base = "files"
        if "--base-path" in self.args:
            base = self.args[self.args.index("--base-path") + 1].strip("/")
        return f"{self.base_url}/{base}/" if base else f"{self.base_url}/"

    @property
    def name(self) -> str:
        return f"pytusd :{self.port} ({self.log_path})"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        cmd = [
            sys.executable, "-m", "pytusd",
            "--host", self.host, "--port", str(self.port),
            "--upload-dir", str(self._dir), *self.args,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTUSD_")}
        env.update(self.env)
        ready = answers(self.url, verify=False)  # tests serve TLS with self-signed certificates
        self.proc = launch(cmd, log_path=self.log_path, env=env, ready=ready, what="pytusd", timeout=timeout)
        track(self)
        return self

    def log(self) -> str:
        return read_tail(self.log_path)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        """Signal the server and wait for it; returns its exit code."""
        if self.proc is None:
            return 0
        untrack(self)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL the server (and its workers): a crash, nothing saved on the way out."""
        if self.proc is None:
            return
        untrack(self)
        kill_tree(self.proc.pid)
        self.proc.wait()
        self.proc = None

    def restart(self) -> ServerProcess:
        self.kill()
        return self.start()


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything below it."""
    children = _children(pid)
    for child in children:
        kill_tree(child)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]
