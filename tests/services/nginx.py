"""A private `nginx` on loopback as a load balancer in front of test servers.

The config is what a tus server behind a reverse proxy needs: bodies streamed
both ways (no buffering, any size), HTTP/1.1 keep-alive to the upstreams and
the client's host and scheme forwarded for absolute ``Location`` URLs.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from . import ServiceError, find_free_port, is_port_clash, require_executable, stop_process, tail, wait_for_port

__all__ = ["NginxProxy", "nginx_config"]

_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def nginx_config(
    listen_port: int,
    upstreams: Sequence[tuple[str, int]],
    workdir: str | os.PathLike[str],
    *,
    as_root: bool | None = None,
) -> str:
    """nginx.conf that balances 127.0.0.1:`listen_port` round robin over `upstreams`.

    Everything nginx writes (pid, logs, temp files) stays in `workdir`.
    `as_root` (default: whether this process is root) adds ``user root;``:
    a root master otherwise runs its worker as ``nobody``, which cannot enter
    a private (0700) temp dir, so any body nginx spills to disk fails (500).
    """
    if not upstreams:
        raise ValueError("nginx needs at least one upstream")
    if as_root is None:
        as_root = os.geteuid() == 0
    w = Path(workdir)
    user = "user root;\n" if as_root else ""
    servers = "".join(f"        server {host}:{port} max_fails=0;\n" for host, port in upstreams)
    temp_paths = "".join(f"    {name}_temp_path {w / name};\n" for name in _TEMP_DIRS)
    return f"""\
daemon off;
master_process on;
# One worker: round robin is then a strict rotation (each worker keeps its own turn).
worker_processes 1;
{user}pid {w / "nginx.pid"};
error_log {w / "error.log"} notice;
events {{ worker_connections 1024; }}

http {{
    log_format upstream '$remote_addr "$request" $status $body_bytes_sent '
                        'upstream=$upstream_addr upstream_status=$upstream_status time=$request_time';
    access_log {w / "access.log"} upstream;
{temp_paths}
    upstream pytusd {{
        # Round robin (the default). max_fails=0: a down server is tried again on the
        # next request instead of being skipped for 10 s, so a restarted one gets traffic at once.
{servers}        keepalive 16;
        # Below the upstream's own idle timeout (uvicorn: 5 s), so nginx never reuses a
        # connection the server is closing (a POST or PATCH sent on it would be a 502).
        keepalive_timeout 4s;
    }}

    server {{
        listen 127.0.0.1:{listen_port};
        # Uploads of any size; the tus server enforces its own --max-size.
        client_max_body_size 0;

        location / {{
            proxy_pass http://pytusd;
            # HTTP/1.1 without "Connection: close": keep-alive to the upstreams and
            # chunked request bodies passed on as they are.
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Stream bodies both ways: a PATCH reaches the server as it arrives (so an
            # interrupted upload still saves what came), downloads are not spooled.
            proxy_request_buffering off;
            proxy_buffering off;
            # A dead machine refuses nothing: give up connecting quickly and try the next one.
            proxy_connect_timeout 2s;
            proxy_read_timeout 300s;
            proxy_send_timeout 300s;
            # What the client used, for absolute Location URLs (pytusd --behind-proxy).
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


class NginxProxy:
    """Debian's `nginx` on 127.0.0.1:<free port>, balancing over `upstreams`.

    Usage::

        with NginxProxy([("127.0.0.1", 8081), ("127.0.0.1", 8082)]) as proxy:
            httpx.get(proxy.url + "/files/")

    The upstreams need not be up yet: nginx only connects per request.
    """

    def __init__(
        self, upstreams: Sequence[tuple[str, int]], *, startup_timeout: float = 10.0, attempts: int = 3
    ) -> None:
        self.upstreams = list(upstreams)
        self.startup_timeout = startup_timeout
        self.attempts = attempts
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self.startup_seconds: float | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise ServiceError("NginxProxy is not running")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def directory(self) -> Path:
        """Temp dir with nginx.conf, logs and nginx's temp dirs."""
        if self._tmp is None:
            raise ServiceError("NginxProxy is not running")
        return Path(self._tmp.name)

    @property
    def log_path(self) -> Path:
        """nginx's error log (startup problems, upstream errors)."""
        return self.directory / "error.log"

    @property
    def access_log_path(self) -> Path:
        """One line per request, naming the upstream that answered it."""
        return self.directory / "access.log"

    @property
    def config_text(self) -> str:
        return (self.directory / "nginx.conf").read_text()

    @property
    def name(self) -> str:
        return f"nginx :{self._port} ({self._tmp.name if self._tmp else 'stopped'})"

    def log(self) -> str:
        """Tails of the error and access logs (for the report of a failing test)."""
        return f"{tail(self.log_path)}\n--- access.log ---\n{tail(self.access_log_path)}"

    def start(self) -> NginxProxy:
        """Start nginx and wait until its port accepts connections.

        Retries on a new port if the probed free port got taken before nginx
        bound it; other failures raise at once.
        """
        if self._proc is not None:
            return self
        binary = require_executable("nginx")
        began = time.monotonic()
        self._tmp = tempfile.TemporaryDirectory(prefix="pytusd-nginx-")
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

    def _start_once(self, binary: str) -> None:
        port = find_free_port()
        workdir = self.directory
        conf = workdir / "nginx.conf"
        conf.write_text(nginx_config(port, self.upstreams, workdir))
        console = workdir / "console.log"  # what nginx prints before its error log is open
        # -e: the error log used until the config is read (the built-in one is under /var/log).
        args = [binary, "-p", str(workdir), "-e", str(self.log_path), "-c", str(conf)]
        with console.open("ab") as out:
            self._proc = subprocess.Popen(
                args, cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self._port = port
        try:
            wait_for_port(port, timeout=self.startup_timeout, what=f"nginx on port {port}", alive=self._died)
        except ServiceError as exc:
            raise ServiceError(
                f"{exc}\n--- nginx console ---\n{tail(console)}\n--- error.log ---\n{tail(self.log_path)}"
            ) from None

    def _died(self) -> str | None:
        if self._proc is not None and (code := self._proc.poll()) is not None:
            return f"exited with code {code}"
        return None

    def _stop_proc(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)  # SIGTERM: the master stops its worker and exits
            self._proc = None
        self._port = None

    def stop(self) -> None:
        """Stop nginx and delete its directory (idempotent)."""
        self._stop_proc()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> NginxProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
