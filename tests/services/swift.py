"""A private single-node OpenStack Swift with the S3 API (s3api) for tests.

Runs Debian's Swift (account, container, object and proxy servers, one
process each) plus a memcached, all on 127.0.0.1, as the current user, with
every file in one temporary directory. Nothing under /etc/swift is used: the
servers get their configs on the command line, and `swift.conf` (whose path
Swift hard-codes) is redirected by a tiny launcher.
"""

from __future__ import annotations

import base64
import functools
import getpass
import hashlib
import os
import subprocess
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import botocore.config  # type: ignore[import-untyped, unused-ignore]
import botocore.exceptions  # type: ignore[import-untyped, unused-ignore]
import botocore.session  # type: ignore[import-untyped, unused-ignore]

from . import (
    ServiceError,
    find_free_port,
    is_port_clash,
    require_executable,
    stop_process,
    tail,
    wait_for_port,
    wait_until,
)

__all__ = ["S3_CONFIG_KWARGS", "SwiftS3Server", "add_content_md5", "make_swift_compatible"]

#: Keyword arguments for `botocore.config.Config` / `aiobotocore.config.AioConfig`
#: that make an S3 client work against Swift's s3api:
#: - path-style addressing (no wildcard DNS for virtual-hosted buckets);
#: - checksums only when required: botocore >= 1.36 otherwise adds CRC32
#:   `x-amz-checksum-*` headers that Swift 2.30 ignores (never verifies or
#:   returns), and over HTTPS it would switch to aws-chunked trailers, which
#:   s3api rejects ("using aws-chunked is not supported");
#: - no retries, so a broken request fails the test at once.
S3_CONFIG_KWARGS: dict[str, Any] = {
    "signature_version": "s3v4",
    "s3": {"addressing_style": "path"},
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
    "retries": {"max_attempts": 1, "mode": "standard"},
    "connect_timeout": 5,
    "read_timeout": 60,
}


def add_content_md5(params: dict[str, Any], **kwargs: Any) -> None:
    """botocore `before-call` handler: set Content-MD5 from the body.

    Swift's s3api requires Content-MD5 on DeleteObjects, but botocore >= 1.36
    sends a CRC32 `x-amz-checksum-*` header instead.
    """
    headers = params["headers"]
    body = params.get("body")
    if "Content-MD5" not in headers and isinstance(body, bytes | bytearray):
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode("ascii")


def make_swift_compatible(client: Any) -> Any:
    """Register the handlers Swift's s3api needs on a botocore/aiobotocore
    S3 client (created with `Config(**S3_CONFIG_KWARGS)`); returns it."""
    client.meta.events.register("before-call.s3.DeleteObjects", add_content_md5)
    return client


# Written to <dir>/bin/launch.py and run by Swift's own interpreter:
#   launch.py <swift_dir> <account|container|object|proxy>-server <conf> -v [rings=A,C,O]
# Swift reads swift.conf (hash prefix/suffix, storage policies, constraints)
# from a hard-coded /etc/swift/swift.conf at import time, and the servers'
# `swift_dir` option does not change that. `set_swift_dir()` (used by
# swift-recon for the same purpose) re-points it and re-reads the hash
# settings; it must run before storage policies/constraints are imported.
# (Importing swift.common.utils still peeks at /etc/swift/swift.conf if it
# exists, but ignores a missing file and set_swift_dir discards what it read.)
# Only the proxy uses rings; it builds them first, which saves an interpreter
# start (importing swift costs ~0.5 s CPU, mostly pkg_resources and eventlet).
_LAUNCHER = textwrap.dedent(
    """
    import os
    import sys

    import swift.common.utils as utils

    if "swift.common.storage_policy" in sys.modules:
        sys.exit("launcher: swift.conf was read before it could be redirected")
    swift_dir = sys.argv.pop(1)
    utils.set_swift_dir(swift_dir)
    server = sys.argv.pop(1)
    if sys.argv[-1].startswith("rings="):
        from swift.common.ring import RingBuilder

        ports = sys.argv.pop()[len("rings="):].split(",")
        for name, port in zip(("account", "container", "object"), ports):
            builder = RingBuilder(10, 1, 1)  # part_power, replicas, min_part_hours
            builder.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1",
                             "port": int(port), "device": "d1", "weight": 1.0})
            builder.rebalance()
            builder.save(os.path.join(swift_dir, name + ".builder"))
            builder.get_ring().save(os.path.join(swift_dir, name + ".ring.gz"))

    from swift.common.wsgi import run_wsgi

    conf_file, options = utils.parse_options()
    kwargs = {}
    if server == "object-server":
        from swift.obj import server as object_server

        kwargs["global_conf_callback"] = object_server.global_conf_callback
    sys.exit(run_wsgi(conf_file, server, **options, **kwargs))
    """
)

_BACKENDS = ("account", "container", "object")
_PROXY_PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk"
    " s3api tempauth copy slo dlo proxy-logging proxy-server"
)


class SwiftS3Server:
    """Single-replica Swift + s3api + tempauth on 127.0.0.1:<free port>.

    Usage::

        with SwiftS3Server() as s3:
            s3.create_bucket("uploads")
            client = s3.client()

    S3 credentials are tempauth's `user_test_tester = testing .admin`.
    """

    access_key = "test:tester"
    secret_key = "testing"
    region = "us-east-1"

    def __init__(
        self,
        *,
        startup_timeout: float = 30.0,
        base_dir: str | os.PathLike[str] | None = None,
        attempts: int = 2,
    ) -> None:
        """`base_dir` is where the temp dir goes; it must support user xattrs."""
        self.startup_timeout = startup_timeout
        self.base_dir = base_dir
        self.attempts = attempts
        self.startup_seconds: float | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._ports: dict[str, int] = {}
        self._session: Any = None

    # -- public API ---------------------------------------------------------

    @property
    def directory(self) -> Path:
        """Temp dir with configs, rings, `srv/` (data) and `log/`."""
        if self._tmp is None:
            raise ServiceError("SwiftS3Server is not running")
        return Path(self._tmp.name)

    @property
    def port(self) -> int:
        if "proxy" not in self._ports:
            raise ServiceError("SwiftS3Server is not running")
        return self._ports["proxy"]

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments for `session.create_client("s3", **kwargs)` (botocore or
        aiobotocore); also pass `config=Config(**S3_CONFIG_KWARGS)` and
        call `make_swift_compatible()` on the client."""
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
        }

    def client(self) -> Any:
        """A synchronous botocore S3 client configured for this server."""
        if self._session is None:  # one session: its loader caches the S3 model
            self._session = botocore.session.get_session()
        session = self._session
        config = botocore.config.Config(**S3_CONFIG_KWARGS)
        return make_swift_compatible(session.create_client("s3", config=config, **self.client_kwargs()))

    def create_bucket(self, name: str) -> None:
        """Create bucket `name` (no error if we already own it)."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        finally:
            client.close()

    def logs(self, lines: int = 40) -> str:
        """Tail of every service log, for diagnosing failures."""
        log_dir = self.directory / "log"
        parts = [f"--- {p.name} ---\n{tail(p, lines)}" for p in sorted(log_dir.glob("*.log"))]
        return "\n".join(parts)

    def start(self) -> SwiftS3Server:
        """Start memcached and the four Swift servers; wait until S3 works.

        Retries with fresh ports if a port that was free when probed got
        taken before a server bound it; other failures raise at once.
        """
        if self._procs:
            return self
        began = time.monotonic()
        for attempt in range(1, self.attempts + 1):
            try:
                self._start_once()
            except ServiceError as exc:
                self.stop()
                if attempt == self.attempts or not is_port_clash(str(exc)):
                    raise
                continue
            self.startup_seconds = time.monotonic() - began
            break
        return self

    def stop(self) -> None:
        """Stop all processes and delete the temp dir (idempotent)."""
        procs = list(self._procs.values())
        for proc in procs:  # signal all first so they shut down in parallel
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            stop_process(proc)
        self._procs.clear()
        self._ports.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def stop_proxy(self) -> None:
        """Kill the proxy server, the S3 endpoint: an outage as S3 clients see it (connections
        refused, those open reset). The data stays with the other servers."""
        proc = self._procs.pop("proxy", None)
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)

    def start_proxy(self) -> None:
        """Start the proxy again on its port after :meth:`stop_proxy`; return once S3 works."""
        if "proxy" in self._procs:
            return
        root = self.directory
        python = _swift_python(require_executable("swift-proxy-server"))
        args = [python, str(root / "bin" / "launch.py"), str(root), "proxy-server", str(root / "proxy-server.conf")]
        self._spawn("proxy", [*args, "-v"], append=True)  # the rings are built already
        deadline = time.monotonic() + self.startup_timeout
        healthy = functools.partial(_http_ok, f"http://127.0.0.1:{self.port}/healthcheck")
        try:
            wait_until(healthy, timeout=_left(deadline), what="swift proxy", alive=self._died)
            wait_until(self._s3_ready, timeout=_left(deadline), what="swift s3api", alive=self._died, interval=0.2)
        except ServiceError as exc:
            raise ServiceError(f"{exc}\n{self.logs()}") from None

    def __enter__(self) -> SwiftS3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------

    def _start_once(self) -> None:
        memcached = require_executable("memcached")
        python = _swift_python(require_executable("swift-proxy-server"))
        self._tmp = tempfile.TemporaryDirectory(prefix="pytusd-swift-", dir=self.base_dir)
        root = self.directory
        (root / "log").mkdir()
        (root / "srv" / "d1").mkdir(parents=True)
        (root / "cache").mkdir()
        _check_xattrs(root / "srv" / "d1")

        self._ports = {name: find_free_port() for name in ("memcached", "proxy", *_BACKENDS)}
        self._write_configs()
        launcher = root / "bin" / "launch.py"  # own dir: it becomes sys.path[0]
        launcher.parent.mkdir()
        launcher.write_text(_LAUNCHER)

        # 16 MB cache, no UDP; as root memcached insists on an explicit -u.
        memcached_args = [memcached, "-l", "127.0.0.1", "-p", str(self._ports["memcached"]), "-U", "0"]
        memcached_args += ["-m", "16", *(["-u", getpass.getuser()] if os.geteuid() == 0 else [])]
        self._spawn("memcached", memcached_args)
        rings = "rings=" + ",".join(str(self._ports[name]) for name in _BACKENDS)
        for name in (*_BACKENDS, "proxy"):
            server = f"{name}-server"
            args = [python, str(launcher), str(root), server, str(root / f"{server}.conf"), "-v"]
            self._spawn(name, [*args, rings] if name == "proxy" else args)

        deadline = time.monotonic() + self.startup_timeout
        alive = self._died
        try:
            wait_for_port(self._ports["memcached"], timeout=_left(deadline), what="memcached", alive=alive)
            for name in (*_BACKENDS, "proxy"):
                healthy = functools.partial(_http_ok, f"http://127.0.0.1:{self._ports[name]}/healthcheck")
                wait_until(healthy, timeout=_left(deadline), what=f"swift {name}", alive=alive)
            wait_until(self._s3_ready, timeout=_left(deadline), what="swift s3api", alive=alive, interval=0.2)
        except ServiceError as exc:
            raise ServiceError(f"{exc}\n{self.logs()}") from None

    def _write_configs(self) -> None:
        root = self.directory
        p = self._ports
        defaults = f"""
            [DEFAULT]
            bind_ip = 127.0.0.1
            workers = 0
            user = {getpass.getuser()}
            swift_dir = {root}
            devices = {root / "srv"}
            mount_check = false
            bind_timeout = 1
            log_level = INFO
            eventlet_debug = false
            """
        files = {
            "swift.conf": """
                [swift-hash]
                swift_hash_path_suffix = pytusd-test-suffix
                swift_hash_path_prefix = pytusd-test-prefix

                [storage-policy:0]
                name = Policy-0
                default = yes
                """,
            "proxy-server.conf": f"""
                {defaults}
                bind_port = {p["proxy"]}

                [pipeline:main]
                pipeline = {_PROXY_PIPELINE}

                [app:proxy-server]
                use = egg:swift#proxy
                account_autocreate = true

                [filter:s3api]
                use = egg:swift#s3api
                location = {self.region}
                max_upload_part_num = 10000
                max_multi_delete_objects = 1000
                max_parts_listing = 1000
                allow_multipart_uploads = true
                min_segment_size = 5242880
                check_bucket_owner = false
                s3_acl = false

                [filter:tempauth]
                use = egg:swift#tempauth
                user_test_tester = testing .admin

                [filter:slo]
                use = egg:swift#slo
                max_manifest_segments = 10000

                [filter:cache]
                use = egg:swift#memcache
                memcache_servers = 127.0.0.1:{p["memcached"]}

                [filter:catch_errors]
                use = egg:swift#catch_errors
                [filter:gatekeeper]
                use = egg:swift#gatekeeper
                [filter:healthcheck]
                use = egg:swift#healthcheck
                [filter:proxy-logging]
                use = egg:swift#proxy_logging
                [filter:listing_formats]
                use = egg:swift#listing_formats
                [filter:bulk]
                use = egg:swift#bulk
                [filter:copy]
                use = egg:swift#copy
                [filter:dlo]
                use = egg:swift#dlo
                """,
        }
        for name in _BACKENDS:
            files[f"{name}-server.conf"] = f"""
                {defaults}
                bind_port = {p[name]}
                recon_cache_path = {root / "cache"}

                [pipeline:main]
                pipeline = healthcheck {name}-server

                [app:{name}-server]
                use = egg:swift#{name}

                [filter:healthcheck]
                use = egg:swift#healthcheck
                """
        for filename, text in files.items():
            lines = (line.strip() for line in text.splitlines())
            (root / filename).write_text("\n".join(lines).strip() + "\n")

    def _spawn(self, name: str, args: list[str], *, append: bool = False) -> None:
        # No eventlet green DNS: we only use IPs, and skipping dnspython saves
        # ~0.4 s CPU and ~10 MB per Swift process.
        env = {**os.environ, "EVENTLET_NO_GREENDNS": "yes"}
        with (self.directory / "log" / f"{name}.log").open("ab" if append else "wb") as out:
            self._procs[name] = subprocess.Popen(
                args, cwd=self.directory, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )

    def _died(self) -> str | None:
        for name, proc in self._procs.items():
            if (code := proc.poll()) is not None:
                return f"{name} exited with code {code}"
        return None

    def _s3_ready(self) -> bool:
        client = self.client()
        try:
            client.list_buckets()
            return True
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            return False
        finally:
            client.close()


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _swift_python(script: str) -> str:
    """The interpreter Swift is installed for (from its script's shebang)."""
    with open(script, "rb") as fh:
        first = fh.readline().decode(errors="replace")
    if not first.startswith("#!"):
        raise ServiceError(f"cannot find Swift's interpreter: {script} has no shebang")
    return first[2:].split()[0]


def _check_xattrs(path: Path) -> None:
    """Swift's object server needs user xattrs; fail early with a clear hint."""
    probe = path / ".xattr-probe"
    probe.touch()
    try:
        os.setxattr(probe, "user.swift.probe", b"1")
    except OSError as exc:
        raise ServiceError(f"{path} does not support user xattrs ({exc}); pass base_dir= elsewhere") from None
    finally:
        probe.unlink()
