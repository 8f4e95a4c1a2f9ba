"""A pytusd cluster for tests: three instances on one S3 bucket behind nginx, locks in Redis.

:class:`Cluster` starts a private :class:`RedisServer`, ``size`` pytusd processes on the same
bucket and object prefix of the session's Swift (s3api) and an :class:`NginxProxy` balancing
over them round robin. Each instance is what a separate machine would be: its own
``--upload-dir`` (so the file locks of one are invisible to the others: only Redis is shared)
and ``--behind-proxy``, so the URLs it builds name nginx's host.

The cluster always runs on S3, whatever ``PYTUSD_TEST_STORE`` says: a file store cannot be
shared between machines. Its tests therefore run in both passes of scripts/test. Missing
binaries (nginx, redis-server, Swift) fail the test instead of skipping it: CI installs them
with scripts/install-system-deps.sh, and a cluster test that silently never runs is worse.

Usage (the ``cluster`` fixture is a factory; its clusters stop at the end of the test)::

    from tests.integration.cluster_helpers import ClusterFactory, cluster_fixture  # noqa: F401

    def test_something(cluster: ClusterFactory) -> None:
        c = cluster(args=["--lock-timeout", "2s"])  # with --redis-url <c.redis.url> --redis-lock-ttl 3s
        response = httpx.post(c.url, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "5"})
        c.instances[0].kill()  # SIGKILL; nginx sends its requests to the others
        c.instances[0].start()  # back on the same port, so nginx's upstream list stays valid
        c.restart_redis()  # an empty Redis on the same port
"""

from __future__ import annotations

import enum
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Literal

import pytest
from tests.integration.s3_helpers import ROOT, aws_env, bucket_keys, s3_flags, shared_swift, unique_prefix
from tests.services import is_port_clash
from tests.services.nginx import NginxProxy
from tests.services.redis_server import RedisServer
from tests.services.swift import SwiftS3Server
from tests.support.server import (
    ServerStartError,
    answers,
    free_port,
    kill_tree,
    launch,
    read_tail,
    track,
    untrack,
)

__all__ = ["OWN_REDIS", "Cluster", "ClusterFactory", "ClusterInstance", "RedisURL", "cluster_fixture"]


class _Redis(enum.Enum):
    OWN = "the cluster's own Redis"


#: ``redis_url`` default: ``--redis-url`` names the Redis the cluster started.
OWN_REDIS: Literal[_Redis.OWN] = _Redis.OWN
#: What ``--redis-url`` gets: the cluster's Redis, that URL, or no Redis flags at all (None).
RedisURL = str | Literal[_Redis.OWN] | None


class ClusterInstance:
    """One ``pytusd`` of the cluster, on a port it keeps across restarts (nginx's upstream list is fixed)."""

    def __init__(self, index: int, args: Sequence[str], env: dict[str, str], directory: Path) -> None:
        self.index = index
        self.args = list(args)
        self.env = env
        self.directory = directory
        self.upload_dir = directory / "uploads"
        self.log_path = directory / "pytusd.log"  # appended to by every start
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The creation URL, bypassing nginx."""
        return f"{self.base_url}/files/"

    @property
    def name(self) -> str:
        return f"cluster pytusd #{self.index} :{self.port} ({self.log_path})"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> ClusterInstance:
        """Start (or start again after :meth:`kill`/:meth:`stop`) on the same port; no-op if running.

        Fails if another process took the port while the instance was down.
        """
        if self.running:
            return self
        self.starts += 1
        with self.log_path.open("a") as log:
            log.write(f"--- start {self.starts} on port {self.port} ---\n")
        cmd = [sys.executable, "-m", "pytusd", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--upload-dir", str(self.upload_dir), *self.args]
        self.proc = launch(
            cmd, log_path=self.log_path, env=self.env, cwd=ROOT, ready=answers(self.url), what=self.name,
            timeout=timeout,
        )  # fmt: skip
        track(self)
        return self

    def log(self) -> str:
        return read_tail(self.log_path)

    def kill(self) -> None:
        """SIGKILL the instance (and its workers): a crash, nothing saved on the way out."""
        if self.proc is None:
            return
        untrack(self)
        kill_tree(self.proc.pid)
        self.proc.wait()
        self.proc = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        """Signal the instance and wait for it (a graceful shutdown); returns its exit code."""
        if self.proc is None:
            return 0
        untrack(self)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_tree(self.proc.pid)
            code = self.proc.wait()
        self.proc = None
        return code

    def restart(self) -> ClusterInstance:
        self.kill()
        return self.start()


class Cluster:
    """Redis, ``size`` pytusd instances on one S3 bucket and prefix, and nginx in front of them.

    Every instance gets ``--behind-proxy``, the S3 flags, ``--redis-url URL --redis-lock-ttl TTL``
    and then ``args``. ``redis_url`` is :data:`OWN_REDIS` (the cluster's Redis), another URL (say,
    one where nothing listens) or None: no Redis flags at all (``redis_lock_ttl`` None: no TTL flag).
    Redis is started in every case, so a test can always reach ``cluster.redis``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        args: Sequence[str] = (),
        redis_url: RedisURL = OWN_REDIS,
        redis_lock_ttl: str | None = "3s",
        size: int = 3,
    ) -> None:
        self.directory = directory
        self.args = list(args)
        self.redis_url = redis_url
        self.redis_lock_ttl = redis_lock_ttl
        self.size = size
        self.prefix = unique_prefix()
        self.redis = RedisServer()
        self.instances: list[ClusterInstance] = []
        self._proxy: NginxProxy | None = None
        self._swift: SwiftS3Server | None = None

    @property
    def proxy(self) -> NginxProxy:
        if self._proxy is None:
            raise RuntimeError("the cluster is not running")
        return self._proxy

    @property
    def swift(self) -> SwiftS3Server:
        if self._swift is None:
            raise RuntimeError("the cluster is not running")
        return self._swift

    @property
    def base_url(self) -> str:
        return self.proxy.url

    @property
    def url(self) -> str:
        """The creation URL through nginx."""
        return f"{self.proxy.url}/files/"

    def instance_flags(self) -> list[str]:
        """The flags every instance gets (besides host, port and upload dir)."""
        flags = [*s3_flags(self.swift, self.prefix), "--behind-proxy"]
        url = self.redis.url if self.redis_url is _Redis.OWN else self.redis_url
        if url is not None:
            flags += ["--redis-url", url]
            if self.redis_lock_ttl is not None:
                flags += ["--redis-lock-ttl", self.redis_lock_ttl]
        return [*flags, *self.args]

    def start(self) -> Cluster:
        """Start everything; the instances start in parallel (each takes about a second)."""
        try:
            self._swift = _swift()
            self.redis.start()
            track(self.redis)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTUSD_", "AWS_"))}
            env.update(aws_env(self.swift))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
            flags = self.instance_flags()
            for index in range(self.size):
                directory = self.directory / f"instance-{index}"
                directory.mkdir(parents=True, exist_ok=True)
                self.instances.append(ClusterInstance(index, flags, env, directory))
            with ThreadPoolExecutor(self.size) as pool:
                list(pool.map(_first_start, self.instances))
            self._proxy = NginxProxy([("127.0.0.1", instance.port) for instance in self.instances]).start()
            track(self._proxy)
        except BaseException:
            self.stop()
            raise
        return self

    def restart_redis(self) -> RedisServer:
        """Kill Redis and start an empty one on the same port (the instances' ``--redis-url``).

        For Redis being down a while, use ``cluster.redis.kill()`` and later this.
        """
        return self.redis.restart()

    def keys(self) -> list[str]:
        """The cluster's objects in the bucket (its prefix only)."""
        return bucket_keys(self.swift, self.prefix)

    def stop(self) -> None:
        """Kill the instances, stop nginx and Redis (idempotent); the logs stay in ``directory``."""
        for instance in self.instances:
            instance.kill()
        if self._proxy is not None:
            untrack(self._proxy)
            self._proxy.stop()
            self._proxy = None
        untrack(self.redis)
        self.redis.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _swift() -> SwiftS3Server:
    """The session's Swift; a missing Swift fails the test (shared_swift() would skip it)."""
    try:
        return shared_swift()
    except pytest.skip.Exception as exc:
        pytest.fail(f"the cluster needs Swift ({exc.msg}); install it with scripts/install-system-deps.sh")


def _first_start(instance: ClusterInstance, attempts: int = 3) -> None:
    """Start an instance before nginx knows its port: a port taken meanwhile is replaced by a new one."""
    for attempt in range(1, attempts + 1):
        try:
            instance.start()
            return
        except ServerStartError as exc:
            if attempt == attempts or not is_port_clash(str(exc)):
                raise
            instance.port = free_port()


class ClusterFactory:
    """The ``cluster`` fixture: ``cluster(**options)`` starts a :class:`Cluster` that the fixture stops."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Cluster] = []

    def __call__(
        self,
        *,
        args: Sequence[str] = (),
        redis_url: RedisURL = OWN_REDIS,
        redis_lock_ttl: str | None = "3s",
        size: int = 3,
    ) -> Cluster:
        directory = self.directory / f"cluster-{len(self.started)}"
        cluster = Cluster(directory, args=args, redis_url=redis_url, redis_lock_ttl=redis_lock_ttl, size=size)
        self.started.append(cluster)
        return cluster.start()

    def stop(self) -> None:
        for cluster in self.started:
            cluster.stop()


@pytest.fixture(name="cluster")
def cluster_fixture(tmp_path: Path) -> Iterator[ClusterFactory]:
    """Clusters started by the test, all stopped at its end (each test gets fresh ones)."""
    factory = ClusterFactory(tmp_path)
    yield factory
    factory.stop()
