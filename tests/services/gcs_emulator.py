"""A private GCS emulator (gcp-storage-emulator from PyPI) for tests.

Runs the emulator (``gcp_storage_emulator start``, threaded: see :data:`_LAUNCHER`) in its own
process on 127.0.0.1 and a free port,
keeping objects in memory (``--in-memory``); its log goes to a temporary directory. Clients
reach it through ``STORAGE_EMULATOR_HOST`` (:attr:`GCSEmulator.endpoint`), as Google's libraries
and gcloud-aio-storage do.

What it does not do that real GCS does (the GCS store relies on them all the same; the tests run
those cases on tests/support/fake_gcs.py): ``ifGenerationMatch`` preconditions are ignored and
compose takes any number of sources.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType

from . import ServiceError, find_free_port, is_port_clash, stop_process, tail, wait_until

__all__ = ["GCSEmulator"]

#: Starts the emulator with one thread per connection: it serves requests one at a time, so a
#: download whose reader stalls (a client that reads nothing) would hold every other request,
#: which GCS never does. Its storage is plain dicts, so the handlers still run one at a time
#: (under a lock); only the sending of responses runs side by side. And it writes all object
#: metadata out as JSON after every change, also in memory (for a restart it never has here):
#: with the objects of a whole test session that grows to most of its time, so it is skipped.
_LAUNCHER = """
import functools, sys, threading
from http import server
from gcp_storage_emulator import server as emulator
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.storage import Storage

Storage._write_config_to_file = lambda self: None

server.HTTPServer = server.ThreadingHTTPServer
server.ThreadingHTTPServer.daemon_threads = True
lock = threading.Lock()

def locked(handler):
    @functools.wraps(handler)
    def run(*args, **kwargs):
        with lock:
            return handler(*args, **kwargs)
    return run

for _, handlers in emulator.HANDLERS:
    for method in list(handlers):
        handlers[method] = locked(handlers[method])
objects.insert = locked(objects.insert)

from gcp_storage_emulator.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


class GCSEmulator:
    """One emulator process; :meth:`create_bucket` makes buckets (there are none at first)."""

    def __init__(self, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self._tmp is not None
        return Path(self._tmp.name) / "gcs-emulator.log"

    def start(self) -> GCSEmulator:
        self._tmp = tempfile.TemporaryDirectory(prefix="pytusd-gcs-emulator-")
        for _attempt in range(3):
            try:
                self._start_once()
                return self
            except ServiceError as exc:
                self._stop_proc()
                if not is_port_clash(str(exc)):
                    self.stop()
                    raise
        self.stop()
        raise ServiceError("GCS emulator: no free port after 3 attempts")

    def _start_once(self) -> None:
        self.port = find_free_port()
        args = [sys.executable, "-c", _LAUNCHER, "start"]
        args += ["--host", "127.0.0.1", "--port", str(self.port), "--in-memory", "--quiet"]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(self._ready, timeout=self.startup_timeout, what="GCS emulator", alive=self._died)
        except ServiceError as exc:
            raise ServiceError(f"{exc}\n--- gcs-emulator.log ---\n{tail(self.log_path)}") from None

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _died(self) -> str | None:
        if self._proc is not None and (code := self._proc.poll()) is not None:
            return f"exited with code {code}"
        return None

    def create_bucket(self, name: str) -> None:
        body = json.dumps({"name": name}).encode()
        request = urllib.request.Request(
            f"{self.endpoint}/storage/v1/b?project=test", data=body, method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # exists already
                raise ServiceError(f"cannot create bucket {name}: {exc}") from None

    def objects(self, bucket: str, prefix: str = "") -> list[str]:
        """Names of the objects in ``bucket`` below ``prefix``."""
        query = urllib.parse.urlencode({"prefix": prefix})
        with urllib.request.urlopen(f"{self.endpoint}/storage/v1/b/{bucket}/o?{query}", timeout=10) as response:
            listing = json.load(response)
        return sorted(str(item["name"]) for item in listing.get("items") or [])

    def _stop_proc(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def stop(self) -> None:
        """Stop the emulator and delete its directory (idempotent)."""
        self._stop_proc()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> GCSEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
