"""A private Azurite (Microsoft's Azure Storage emulator), blob service only, for tests.

Azurite comes from npm, pinned by tests/services/azurite/package-lock.json and installed with
``npm ci`` by scripts/install-azurite.sh. It runs on 127.0.0.1 on a free port, keeps its data in
a temporary directory (on disk rather than --inMemoryPersistence: the suites upload hundreds of
MiB in all) and knows the emulator's one well-known account, devstoreaccount1.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from tests.support.server import exited

from . import ServiceError, find_free_port, is_port_clash, stop_process, tail, wait_for_port

__all__ = ["ACCOUNT", "ACCOUNT_KEY", "AzuriteServer"]

#: The emulator's well-known development account (public, documented by Microsoft).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

PACKAGE_DIR = Path(__file__).resolve().parent / "azurite"
EXECUTABLE = PACKAGE_DIR / "node_modules" / ".bin" / "azurite-blob"


class AzuriteServer:
    """``with AzuriteServer() as azurite:`` -- or :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.log_path = Path()
        self.account = ACCOUNT
        self.key = ACCOUNT_KEY

    @property
    def endpoint(self) -> str:
        """The blob service URL of the account (path-style, as the emulator serves it)."""
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def start(self, timeout: float = 30.0) -> AzuriteServer:
        if not EXECUTABLE.exists():
            raise ServiceError(f"Azurite not found at {EXECUTABLE}; run scripts/install-azurite.sh")
        self._tmp = tempfile.TemporaryDirectory(prefix="pytusd-azurite-")
        for attempt in range(3):
            self.port = find_free_port()
            self.log_path = Path(self._tmp.name) / f"azurite-{self.port}.log"
            cmd = [
                str(EXECUTABLE),
                "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--location", self._tmp.name,
                "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent",
            ]  # fmt: skip
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self._tmp.name)
            proc = self.proc
            try:
                wait_for_port(self.port, timeout=timeout, what="Azurite", alive=exited(proc))
                return self
            except ServiceError as exc:
                message = f"{exc}\n{tail(self.log_path)}"
                stop_process(proc)
                self.proc = None
                if attempt < 2 and is_port_clash(message):
                    continue
                self._cleanup()
                raise ServiceError(message) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def log(self) -> str:
        return tail(self.log_path)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> AzuriteServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
