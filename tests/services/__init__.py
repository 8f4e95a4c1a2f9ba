"""Helpers that start real, throw-away services (Redis, Swift+S3) for tests.

Every service binds to 127.0.0.1 on a free port, keeps its state in its own
temporary directory and is stopped by its context manager, so tests never
depend on (or disturb) system-wide daemons.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.support.ports import free_port
from tests.support.server import port_open, wait_for_start

__all__ = [
    "ServiceError",
    "find_free_port",
    "is_port_clash",
    "port_open",
    "require_executable",
    "stop_process",
    "tail",
    "wait_for_port",
    "wait_until",
]


class ServiceError(RuntimeError):
    """A test service could not be started (message includes its logs)."""


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now, from this test run's band (tests/support/ports.py).

    Another process could still bind it first; callers retry startup when the service fails to bind.
    """
    return free_port()


def is_port_clash(message: str) -> bool:
    """True if a startup error (with its log tail) says the port was taken."""
    return "already in use" in message or "Could not bind" in message


def require_executable(name: str) -> str:
    """Return the absolute path of `name`, or raise a hint to install it."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise ServiceError(f"{name!r} not found; run scripts/install-system-deps.sh as root")
    return path


def tail(path: Path, lines: int = 40) -> str:
    """Last `lines` lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], str | None] | None = None,
    interval: float = 0.05,
) -> None:
    """Poll `check` until it returns True (the shared start loop, raising :class:`ServiceError`).

    `alive` returns an error string when a process we depend on has died, so a
    crashed service fails fast instead of after the whole timeout.
    """
    wait_for_start(check, what=what, timeout=timeout, alive=alive, error=ServiceError, interval=interval)


def wait_for_port(port: int, *, timeout: float, what: str, alive: Callable[[], str | None] | None = None) -> None:
    """Wait until a TCP listener is up on 127.0.0.1:port."""
    wait_until(lambda: port_open(port), timeout=timeout, what=what, alive=alive)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate `proc`, escalating to SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
