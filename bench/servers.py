"""The servers under test: installing the peers, starting/stopping, /proc accounting."""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
LOGS = CACHE / "logs"

#: Installed together into one node_modules (bench/.cache/node). @tus/s3-store is for bench/s3.py; the AWS SDK
#: is its dependency, pinned here too (its releases from 2027 on require node >= 22).
TUS_NODE_PACKAGES = {
    "@tus/server": "2.4.5",
    "@tus/file-store": "2.1.1",
    "@tus/s3-store": "2.0.7",
    "@aws-sdk/client-s3": "3.1178.0",
}
TUSPY_REQUIREMENTS = [
    "tuspyserver==4.4.3",
    "fastapi==0.165.0",
    "uvicorn==0.54.0",
    "uvloop==0.23.0",
    "httptools==0.9.0",
]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class Unavailable(Exception):
    """The server cannot run on this machine; the message says why."""


def _out(cmd: list[str]) -> str:
    """First line of a command's combined output, or '' if it cannot run."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (res.stdout + res.stderr).strip().splitlines()[0] if res.stdout + res.stderr else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tests_importable() -> None:
    """Make the repository's `tests` package importable: its throw-away services (Swift, Redis, nginx)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


class Spec:
    """How to install and launch one server."""

    name = ""
    reference = False  # True: no tus logic (offsets are not verified)
    workloads: tuple[str, ...] | None = None  # None: every workload

    def prepare(self) -> None:
        """Install whatever is missing into bench/.cache; raise Unavailable."""

    def command(self, port: int, data: Path, tmp: Path) -> list[str]:
        raise NotImplementedError

    def env(self, tmp: Path) -> dict[str, str]:
        """Environment variables of the server process, on top of the harness's."""
        return {}

    def versions(self) -> dict[str, str]:
        return {}

    def backend_pids(self) -> list[int]:
        """Processes that work only for this server (its storage): their CPU counts as the server's."""
        return []


class Pytusd(Spec):
    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers
        self.name = "pytusd" if workers is None else f"pytusd-w{workers}"
        self.exe = Path(sys.executable).parent / "pytusd"

    def prepare(self) -> None:
        if not self.exe.exists():
            raise Unavailable(f"{self.exe} not found (is pytusd installed in this venv?)")

    def command(self, port: int, data: Path, tmp: Path) -> list[str]:
        cmd = [str(self.exe), "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--upload-dir", str(data), "--base-path", "/files/"]
        return cmd + (["--workers", str(self.workers)] if self.workers else [])

    def versions(self) -> dict[str, str]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("pytusd")
        except PackageNotFoundError:
            v = "unknown"
        rev = _out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
        return {"pytusd": v + (f" (git {rev})" if re.fullmatch(r"[0-9a-f]+", rev) else "")}


_SWIFT: Any = None


def shared_swift() -> Any:
    """The run's Swift (tests/services/swift.py SwiftS3Server), started on first use, stopped at exit.

    Also puts its S3 credentials into this process's environment, which the servers inherit
    (boto's and the AWS SDK's standard credential chains). Raises Unavailable.
    """
    global _SWIFT
    if _SWIFT is not None:
        return _SWIFT
    _tests_importable()
    try:
        from tests.services.swift import SwiftS3Server

        swift = SwiftS3Server().start()
    except Exception as exc:  # a missing Debian package, a port clash: skip, say why
        raise Unavailable(f"could not start Swift: {exc}") from exc
    atexit.register(swift.stop)
    os.environ.update(
        AWS_ACCESS_KEY_ID=swift.access_key, AWS_SECRET_ACCESS_KEY=swift.secret_key,
        AWS_REGION=swift.region, AWS_EC2_METADATA_DISABLED="true",
    )  # fmt: skip
    _SWIFT = swift
    return swift


def swift_pids() -> list[int]:
    """Swift's live processes (and its memcached), if the run started it."""
    procs = _SWIFT._procs.values() if _SWIFT is not None else []
    return [p.pid for p in procs if p.poll() is None]


def private_tmpdir(tmp: Path) -> Path:
    """A server's own TMPDIR inside its temp dir: what it leaves there can be counted."""
    path = tmp / "tmpdir"
    path.mkdir(exist_ok=True)
    return path


def swift_versions() -> dict[str, str]:
    return {"swift (Debian)": _out(["dpkg-query", "-W", "-f", "${Version}", "swift"]) or "unknown"}


class OnSharedSwift:
    """A server storing on the run's one Swift, in a bucket of its own, spooling into a private TMPDIR."""

    bucket: str
    _swift: Any = None

    def prepare_swift(self) -> None:
        if self._swift is None:
            self._swift = shared_swift()
            self._swift.create_bucket(self.bucket)

    def env(self, tmp: Path) -> dict[str, str]:
        return {"TMPDIR": str(private_tmpdir(tmp))}  # spool dirs and part files go there

    def backend_pids(self) -> list[int]:
        return swift_pids()


class PytusdS3(OnSharedSwift, Pytusd):
    """pytusd on S3: a real single-node OpenStack Swift (s3api), started once for the run.

    ``flags`` are passed on to pytusd as they are; ``prefix`` None: a fresh one per start.
    """

    workloads = ("stream", "chunked")

    def __init__(
        self,
        name: str = "pytusd-s3",
        bucket: str = "pytusd-bench",
        flags: tuple[str, ...] = (),
        prefix: str | None = None,
    ) -> None:
        super().__init__()
        self.name, self.bucket, self.flags, self.prefix = name, bucket, flags, prefix

    def prepare(self) -> None:
        super().prepare()
        self.prepare_swift()

    def command(self, port: int, data: Path, tmp: Path) -> list[str]:
        prefix = f"{tmp.name}/" if self.prefix is None else self.prefix
        s3 = ["--s3-bucket", self.bucket, "--s3-endpoint", self._swift.endpoint_url, "--s3-object-prefix", prefix]
        return super().command(port, data, tmp) + s3 + list(self.flags)

    def versions(self) -> dict[str, str]:
        return {**super().versions(), **swift_versions(), "aiobotocore": _pkg("aiobotocore")}


def _pkg(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


class TusNode(Spec):
    name = "tus-node"
    dir = CACHE / "node"
    script = "tus_node_server.mjs"  # in bench/peers/
    installed_as = "server.mjs"  # next to node_modules
    packages: tuple[str, ...] = ("@tus/server", "@tus/file-store")  # of TUS_NODE_PACKAGES, the ones it uses

    def prepare(self) -> None:
        node = shutil.which("node")
        if not node or not shutil.which("npm"):
            raise Unavailable("node/npm not found")
        if self._installed() != TUS_NODE_PACKAGES:
            self.dir.mkdir(parents=True, exist_ok=True)
            deps = {"private": True, "type": "module", "dependencies": TUS_NODE_PACKAGES}
            (self.dir / "package.json").write_text(json.dumps(deps, indent=2) + "\n")
            print(f"[setup] npm install {TUS_NODE_PACKAGES} into {self.dir}", flush=True)
            res = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--save-exact"],
                cwd=self.dir,
                capture_output=True,
                text=True,
            )
            if res.returncode or self._installed() != TUS_NODE_PACKAGES:
                raise Unavailable(f"npm install failed: {res.stderr.strip()[-500:]}")
        # ESM resolves packages relative to the script, so it lives next to node_modules.
        shutil.copyfile(BENCH / "peers" / self.script, self.dir / self.installed_as)

    def _installed(self) -> dict[str, str]:
        found = {}
        for pkg in TUS_NODE_PACKAGES:
            meta = self.dir / "node_modules" / pkg / "package.json"
            if meta.exists():
                found[pkg] = json.loads(meta.read_text())["version"]
        return found

    def command(self, port: int, data: Path, tmp: Path) -> list[str]:
        return ["node", str(self.dir / self.installed_as), "127.0.0.1", str(port), str(data)]

    def versions(self) -> dict[str, str]:
        found = self._installed()
        return {"node": _out(["node", "--version"]), **{p: found.get(p, "missing") for p in self.packages}}


class TusNodeS3(OnSharedSwift, TusNode):
    """@tus/server with @tus/s3-store on the run's Swift (bench/s3.py): objects keyed by the upload ID."""

    script = "tus_node_s3_server.mjs"
    installed_as = "s3-server.mjs"
    packages = ("@tus/server", "@tus/s3-store", "@aws-sdk/client-s3")
    workloads = ("stream", "chunked")

    def __init__(self, name: str = "tus-node-s3", bucket: str = "tus-node-s3-bench") -> None:
        self.name, self.bucket = name, bucket

    def prepare(self) -> None:
        super().prepare()
        self.prepare_swift()

    def command(self, port: int, data: Path, tmp: Path) -> list[str]:
        script = str(self.dir / self.installed_as)
        return ["node", script, "127.0.0.1", str(port), self.bucket, self._swift.endpoint_url]

    def versions(self) -> dict[str, str]:
        return {**super().versions(), **swift_versions()}


class Tuspyserver(Spec):
    name = "tuspyserver"
    venv = CACHE / "tuspyserver-venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def prepare(self) -> None:
        stamp = self.venv / "bench-requirements.txt"
        wanted = "\n".join(TUSPY_REQUIREMENTS) + "\n"
        if stamp.exists() and stamp.read_text() == wanted and self.python.exists():
            return
        print(f"[setup] creating {self.venv} with {' '.join(TUSPY_REQUIREMENTS)}", flush=True)
        shutil.rmtree(self.venv, ignore_errors=True)
        steps = [
            [sys.executable, "-m", "venv", str(self.venv)],
            [str(self.python), "-m", "pip", "install", "-q", *TUSPY_REQUIREMENTS],
        ]
        for cmd in steps:
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode:
                raise Unavailable(f"{' '.join(cmd[:4])} failed: {res.stderr.strip()[-500:]}")
        stamp.write_text(wanted)

    def command(self, port: int, data: Path, tmp: Path) -> list[str]:
        app = BENCH / "peers" / "tuspyserver_app.py"
        return [str(self.python), str(app), "127.0.0.1", str(port), str(data)]

    def versions(self) -> dict[str, str]:
        return {r.split("==")[0]: r.split("==")[1] for r in TUSPY_REQUIREMENTS}


NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/error.log crit;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    log_not_found off;
    client_body_temp_path {data};
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 0;
    client_body_buffer_size 1m;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/empty;
        location /files/ {{
            if ($request_method = HEAD) {{
                add_header Tus-Resumable 1.0.0;
                add_header Upload-Offset 0;
                return 200;
            }}
            # The mirror module reads the whole body (into a file, kept) before the
            # content phase; the static handler then fails and error_page answers.
            client_body_in_file_only on;
            mirror /_sink;
            mirror_request_body on;
            error_page 403 404 405 = @answer;
        }}
        location = /_sink {{ internal; return 204; }}
        location @answer {{
            if ($request_method = POST) {{
                add_header Tus-Resumable 1.0.0;
                add_header Location /files/$request_id;
                return 201;
            }}
            add_header Tus-Resumable 1.0.0;
            add_header Upload-Offset $content_length;
            return 204;
        }}
    }}
}}
"""


class Nginx(Spec):
    name = "nginx"
    reference = True

    def __init__(self) -> None:
        self.exe = shutil.which("nginx") or "/usr/sbin/nginx"

    def prepare(self) -> None:
        if Path(self.exe).exists():
            return
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise Unavailable("nginx not installed (apt-get install nginx)")
        print("[setup] apt-get install -y nginx", flush=True)
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-y", "-q"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run([*apt, "install", "nginx"], env=env, capture_output=True).returncode:
            subprocess.run([*apt, "update"], env=env, capture_output=True)
            subprocess.run([*apt, "install", "nginx"], env=env, capture_output=True)
        self.exe = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(self.exe).exists():
            raise Unavailable("apt-get install nginx failed")

    def command(self, port: int, data: Path, tmp: Path) -> list[str]:
        (tmp / "empty").mkdir(exist_ok=True)
        user = "user root;" if os.geteuid() == 0 else ""
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, data=data, port=port))
        return [self.exe, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)]

    def versions(self) -> dict[str, str]:
        return {"nginx": _out([self.exe, "-v"]).removeprefix("nginx version: nginx/")}


#: What the Redis and nginx variants run: the workloads where locking and proxying cost most
#: per byte (one lock per request, tiny bodies). Bulk transfers would measure the page cache again.
LOCK_WORKLOADS = ("small", "small-cwu", "head")


class PrivateRedis:
    """A private redis-server for one spec, started once per run on first use.

    tests/services/redis_server.py: 127.0.0.1 on a free port, its own temp dir, no persistence
    (``--save "" --appendonly no``). Stopped at exit (atexit), like pytusd-s3's Swift.
    """

    def __init__(self) -> None:
        self.server: Any = None

    def start(self) -> None:
        if self.server is not None:
            return
        _tests_importable()
        try:
            from tests.services.redis_server import RedisServer

            server = RedisServer().start()
        except Exception as exc:  # not installed, a port clash: skip, say why
            raise Unavailable(f"could not start redis-server: {exc}") from exc
        atexit.register(server.stop)
        self.server = server

    @property
    def url(self) -> str:
        return str(self.server.url)

    def pids(self) -> list[int]:
        proc = self.server._proc if self.server is not None else None
        return [proc.pid] if proc is not None and proc.poll() is None else []

    @staticmethod
    def versions() -> dict[str, str]:
        found = re.search(r"\bv=(\S+)", _out(["redis-server", "--version"]))
        return {"redis-server": found.group(1) if found else "unknown"}


class PytusdRedis(Pytusd):
    """pytusd as `pytusd` (one process, file store) with its locks in a private Redis."""

    workloads = LOCK_WORKLOADS

    def __init__(self) -> None:
        super().__init__()
        self.name = "pytusd-redis"
        self.redis = PrivateRedis()

    def prepare(self) -> None:
        super().prepare()
        self.redis.start()

    def command(self, port: int, data: Path, tmp: Path) -> list[str]:
        return [*super().command(port, data, tmp), "--redis-url", self.redis.url]

    def backend_pids(self) -> list[int]:
        return self.redis.pids()  # Redis works only for this server: its CPU counts

    def versions(self) -> dict[str, str]:
        return {**super().versions(), **self.redis.versions()}


def proxy_config(listen_port: int, upstreams: list[tuple[str, int]], workdir: Path) -> str:
    """The tests' nginx load balancer (tests/services/nginx.py), with two changes for the benchmark.

    Everything that matters for a tus server behind a proxy stays as the tests have it:
    round robin, one worker, no request/response buffering, any body size, HTTP/1.1 with
    upstream keep-alive (16 connections, 4 s), Host/X-Forwarded-* headers, `user root;` as root.
    """
    from tests.services.nginx import nginx_config

    conf: str = nginx_config(listen_port, upstreams, workdir)
    edits = [
        # A write() per request; pytusd itself logs no requests (uvicorn's access log is off),
        # nor does the nginx reference.
        (r"(?m)^(\s*)access_log .*;$", r"\1access_log off;"),
        # nginx closes a client connection after 1000 requests by default; loadclient does not
        # reconnect, so `head` would lose its connections one by one. As the nginx reference.
        (r"(?m)^(\s*)client_max_body_size 0;$", r"\g<0>\n\1keepalive_requests 100000000;"),
    ]
    for pattern, repl in edits:
        conf, n = re.subn(pattern, repl, conf)
        if n != 1:
            raise Unavailable(f"tests/services/nginx.py changed: {pattern!r} matched {n} times in its config")
    return conf


class PytusdNginx(Spec):
    """nginx (round robin) in front of `instances` pytusd processes sharing one upload dir.

    One instance: file locks (the default). Several: locks in a private Redis. Every
    instance gets --behind-proxy. The command is bench/cluster_launcher.py, which starts
    the instances and then nginx as its children, so the measured process tree holds them all.
    """

    workloads = LOCK_WORKLOADS

    def __init__(self, instances: int) -> None:
        self.instances = instances
        self.name = f"pytusd-nginx{instances}"
        self.pytusd = Pytusd()
        self.nginx = Nginx()
        self.redis = PrivateRedis() if instances > 1 else None

    def prepare(self) -> None:
        self.pytusd.prepare()
        self.nginx.prepare()
        if self.redis is not None:
            self.redis.start()
        _tests_importable()
        try:
            import tests.services.nginx  # noqa: F401
        except Exception as exc:
            raise Unavailable(f"cannot import tests.services.nginx: {exc}") from exc

    def command(self, port: int, data: Path, tmp: Path) -> list[str]:
        ports: list[int] = []
        while len(ports) < self.instances:
            if (p := free_port()) not in (port, *ports):
                ports.append(p)
        flags = ["--behind-proxy"] + (["--redis-url", self.redis.url] if self.redis is not None else [])
        # All on the same --upload-dir: a HEAD finds the upload whichever instance created it.
        backends = [
            {"name": f"pytusd#{i}", "cmd": self.pytusd.command(p, data, tmp) + flags, "port": p}
            for i, p in enumerate(ports, 1)
        ]
        workdir = tmp / "nginx"
        workdir.mkdir(exist_ok=True)
        conf = workdir / "nginx.conf"
        conf.write_text(proxy_config(port, [("127.0.0.1", p) for p in ports], workdir))
        log = workdir / "error.log"
        front = {"name": "nginx", "cmd": [self.nginx.exe, "-p", str(workdir), "-e", str(log), "-c", str(conf)]}
        plan = tmp / "cluster.json"
        plan.write_text(json.dumps({"backends": backends, "front": {**front, "log": str(log)}}, indent=1))
        return [sys.executable, str(BENCH / "cluster_launcher.py"), str(plan)]

    def backend_pids(self) -> list[int]:
        return self.redis.pids() if self.redis is not None else []

    def versions(self) -> dict[str, str]:
        v = {**self.pytusd.versions(), **self.nginx.versions()}
        return {**v, **self.redis.versions()} if self.redis is not None else v


SPECS: dict[str, Spec] = {
    s.name: s
    for s in [
        *(Pytusd(), Pytusd(workers=2), TusNode(), Tuspyserver(), Nginx(), PytusdS3()),
        *(PytusdRedis(), PytusdNginx(1), PytusdNginx(3)),
    ]
}


# ---------------------------------------------------------------- /proc helpers


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 = state)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()
    except OSError:
        return None


def tree(root: int) -> list[int]:
    """root and all its live descendants."""
    pids, i = [root], 0
    while i < len(pids):
        try:
            for tid in os.listdir(f"/proc/{pids[i]}/task"):
                with open(f"/proc/{pids[i]}/task/{tid}/children") as f:
                    pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
        i += 1
    return pids


def tree_cpu(root: int) -> float:
    """CPU seconds (user+system) of the tree, including reaped descendants."""
    ticks = 0
    for pid in tree(root):
        st = proc_stat(pid)
        if st:
            ticks += sum(int(x) for x in st[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


def tree_rss(root: int) -> int:
    """Sum of RSS bytes over the tree (shared pages of forked workers count twice)."""
    return sum(int(st[21]) for pid in tree(root) if (st := proc_stat(pid))) * PAGE


# ---------------------------------------------------------------- running servers


WIPE_MIN_SIZE = 1 << 20


@dataclass
class Running:
    spec: Spec
    port: int
    data: Path
    tmp: Path
    proc: subprocess.Popen[bytes]
    log: Path
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid) + sum(tree_cpu(pid) for pid in self.spec.backend_pids())

    def rss(self) -> int:
        return tree_rss(self.proc.pid)

    def wipe(self, min_size: int = WIPE_MIN_SIZE) -> None:
        """Delete uploaded files of at least min_size bytes (directories stay: servers rely on them).

        Small files stay until the server stops: on ext4 without a journal (this machine's root
        file system) every file created within 60 s of a mass delete scans the deleted inodes
        (`recently_deleted` in ext4's inode allocator; 40 % of the server's CPU in `perf`), so
        deleting thousands of small uploads right before a measurement slows whoever comes next.
        """
        for dirpath, _dirs, files in os.walk(self.data):
            for f in files:
                path = os.path.join(dirpath, f)
                with contextlib.suppress(OSError):
                    if min_size <= 0 or os.stat(path).st_size >= min_size:
                        os.unlink(path)

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # the session we created
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.sync()  # clean inode tables: ext4 then skips the deleted inodes for 60 s, not 360 s


def _ready(port: int) -> bool:
    """Does something answer HTTP on the port?"""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("OPTIONS", "/files/", headers={"Tus-Resumable": "1.0.0"})
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


def start(spec: Spec, timeout: float = 60.0) -> Running:
    """Start the server on a free port with a fresh data dir; raise Unavailable."""
    spec.prepare()
    tmp = Path(tempfile.mkdtemp(prefix=f"tusbench-{spec.name}-"))
    data = tmp / "data"
    data.mkdir()
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{spec.name}.log"
    cmd = spec.command(port, data, tmp)
    env = {**os.environ, **spec.env(tmp)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
            start_new_session=True,
        )
    srv = Running(spec, port, data, tmp, proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not srv.alive:
            break
        if _ready(port):
            return srv
        time.sleep(0.1)
    srv.stop()
    raise Unavailable(f"did not start ({' '.join(cmd)}); log {log}:\n{srv.log_tail()}")
