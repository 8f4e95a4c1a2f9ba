"""A real pytusd process on a real TCP port, for integration and interop tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

#: The store every server of this test session uses: "file" (default) or "s3" (see tests/conftest.py).
_backend = os.environ.get("PYTUSD_TEST_STORE", "file")


def current_backend() -> str:
    return _backend


def _backend_args_and_env() -> tuple[list[str], dict[str, str]]:
    """Flags and environment that put a new server's uploads on the current store."""
    if _backend == "file":
        return [], {}
    from tests.integration.s3_helpers import aws_env, s3_flags, shared_swift, unique_prefix

    swift = shared_swift()
    return s3_flags(swift, unique_prefix()), aws_env(swift)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The creation URL (base path of uploads)."""
        return f"{self.base_url}/files/"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        cmd = [
            sys.executable, "-m", "pytusd",
            "--host", self.host, "--port", str(self.port),
            "--upload-dir", str(self._dir), *self.args,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTUSD_")}
        env.update(self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pytusd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                response = httpx.options(self.url, timeout=1.0)
                if response.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"pytusd did not start within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        """Signal the server and wait for it; returns its exit code."""
        if self.proc is None:
            return 0
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
        _kill_tree(self.proc.pid)
        self.proc.wait()
        self.proc = None

    def restart(self) -> ServerProcess:
        self.kill()
        return self.start()


def _kill_tree(pid: int) -> None:
    children = _children(pid)
    for child in children:
        _kill_tree(child)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]
