"""Cheap load-generating clients: curl, blocking sockets with sendfile, raw asyncio.

Each workload returns (metrics, failures). HTTP/1.1 is hand-written on purpose:
the client shares the two cores with the server and must stay cheap.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

uvloop: ModuleType | None
try:
    import uvloop
except ImportError:  # plain asyncio works too, a bit slower
    uvloop = None

Metrics = dict[str, float]
T = TypeVar("T")
MB = 1e6
OCTET = "application/offset+octet-stream"
# filename and filetype: tuspyserver answers HEAD with 400 without them.
METADATA = "filename YmVuY2guYmlu,filetype YXBwbGljYXRpb24vb2N0ZXQtc3RyZWFt"


@dataclass
class Target:
    host: str
    port: int
    base: str = "/files/"
    verify: bool = True  # False for the nginx reference: it keeps no offsets

    @property
    def hostport(self) -> str:
        return f"{self.host}:{self.port}"


class HTTPError(Exception):
    pass


# ---------------------------------------------------------------- minimal HTTP/1.1


def request_bytes(method: str, t: Target, path: str, headers: dict[str, object]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {t.hostport}", "Tus-Resumable: 1.0.0"]
    if method == "POST":
        lines.append(f"Upload-Metadata: {METADATA}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def header(head: bytes, name: bytes) -> bytes | None:
    """Value of a response header (name lower-case) in a raw header block."""
    i = head.lower().find(b"\r\n" + name + b":")
    if i < 0:
        return None
    i += len(name) + 3
    j = head.find(b"\r\n", i)
    return head[i : j if j >= 0 else len(head)].strip()


def _chunked_end(buf: bytearray, pos: int) -> int | None:
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
        pos = eol + 2 + size + 2
        if len(buf) < pos:
            return None
        if size == 0:
            return pos  # (trailers are not supported; servers here send none)


def parse_response(buf: bytearray, head_request: bool) -> tuple[int, bytes, int] | None:
    """(status, header block, bytes consumed) of the first full response in buf."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end])
    status = int(head[9:12])
    pos: int | None = end + 4
    if not (head_request or status in (204, 304) or status < 200):
        te = header(head, b"transfer-encoding")
        if te and b"chunked" in te.lower():
            pos = _chunked_end(buf, end + 4)
        else:
            pos = end + 4 + int(header(head, b"content-length") or 0)
            if len(buf) < pos:
                pos = None
    return None if pos is None else (status, head, pos)


def location_path(head: bytes) -> str:
    loc = header(head, b"location")
    if not loc:
        raise HTTPError("201 without Location")
    return urlsplit(loc.decode()).path


def _check(status: int, want: int, what: str) -> None:
    if status != want:
        raise HTTPError(f"{what}: HTTP {status}")


# ---------------------------------------------------------------- blocking client


class SyncConn:
    """One keep-alive connection, blocking; bodies go out with sendfile()."""

    def __init__(self, t: Target) -> None:
        self.t = t
        self.sock = socket.create_connection((t.host, t.port), timeout=600)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def response(self, head_request: bool = False) -> tuple[int, bytes]:
        while not (res := parse_response(self.buf, head_request)):
            data = self.sock.recv(65536)
            if not data:
                raise HTTPError("connection closed by server")
            self.buf += data
        del self.buf[: res[2]]
        return res[0], res[1]

    def create(self, length: int) -> str:
        self.sock.sendall(request_bytes("POST", self.t, self.t.base, {"Upload-Length": length, "Content-Length": 0}))
        status, head = self.response()
        _check(status, 201, "POST")
        return location_path(head)

    def patch(self, path: str, f: Any, offset: int, count: int) -> None:
        self.sock.sendall(
            request_bytes(
                "PATCH", self.t, path, {"Upload-Offset": offset, "Content-Type": OCTET, "Content-Length": count}
            )
        )
        self.sock.sendfile(f, offset, count)
        status, head = self.response()
        _check(status, 204, "PATCH")
        if self.t.verify and header(head, b"upload-offset") != str(offset + count).encode():
            raise HTTPError(f"PATCH: Upload-Offset {header(head, b'upload-offset')!r}")

    def offset(self, path: str) -> int:
        self.sock.sendall(request_bytes("HEAD", self.t, path, {}))
        status, head = self.response(head_request=True)
        _check(status, 200, "HEAD")
        return int(header(head, b"upload-offset") or -1)


def stream(t: Target, src: Path, size: int, created: list[str] | None = None) -> tuple[Metrics, int]:
    """POST, then one PATCH of the whole file with curl; MB/s of the PATCH.

    ``created``: the upload's URL path is appended to it (to find the stored object afterwards).
    """
    path = _once(t, lambda c: c.create(size))
    if created is not None:
        created.append(path)
    # `-T` streams the file; `--data-binary @file` loads it in memory (and
    # curl refuses files >= 1 GiB that way).
    res = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total}",
            "-X",
            "PATCH",
            "-T",
            str(src),
            "-H",
            "Tus-Resumable: 1.0.0",
            "-H",
            "Upload-Offset: 0",
            "-H",
            f"Content-Type: {OCTET}",
            "-H",
            "Expect:",
            "--max-time",
            "600",
            f"http://{t.hostport}{path}",
        ],
        capture_output=True,
        text=True,
    )
    code, secs = res.stdout.split() if res.stdout else ("000", "0")
    if code != "204":
        raise HTTPError(f"curl PATCH: HTTP {code} {res.stderr.strip()}")
    if t.verify and (got := _once(t, lambda c: c.offset(path))) != size:
        raise HTTPError(f"HEAD after PATCH: offset {got} != {size}")
    return {"MB/s": size / MB / float(secs)}, 0


def _once(t: Target, fn: Callable[[SyncConn], T]) -> T:
    """fn on a fresh connection (an idle one may be closed by the server)."""
    conn = SyncConn(t)
    try:
        return fn(conn)
    finally:
        conn.close()


def chunked(t: Target, src: Path, size: int, chunk: int, created: list[str] | None = None) -> tuple[Metrics, int]:
    """POST, then size/chunk PATCHes on one keep-alive connection (``created`` as in stream())."""
    conn = SyncConn(t)
    try:
        with open(src, "rb") as f:
            path = conn.create(size)
            if created is not None:
                created.append(path)
            t0 = time.perf_counter()
            for off in range(0, size, chunk):
                conn.patch(path, f, off, min(chunk, size - off))
            secs = time.perf_counter() - t0
    finally:
        conn.close()
    return {"MB/s": size / MB / secs}, 0


def memory(
    t: Target,
    src: Path,
    n: int,
    size: int,
    rss: Callable[[], int],
    every: float = 0.05,
    created: list[str] | None = None,
) -> tuple[Metrics, int]:
    """n uploads of `size` bytes PATCHed at once (threads + sendfile); RSS sampled (``created`` as in stream())."""
    idle = 0
    for _ in range(5):
        idle = max(idle, rss())
        time.sleep(every)
    gate = threading.Barrier(n + 1)
    errors: list[Exception] = []

    def upload() -> None:
        try:
            conn = SyncConn(t)
        except OSError as e:
            errors.append(e)
            gate.abort()
            return
        try:
            path = conn.create(size)
            if created is not None:
                created.append(path)  # list.append is atomic
            gate.wait()
            with open(src, "rb") as f:
                conn.patch(path, f, 0, size)
        except (OSError, HTTPError, threading.BrokenBarrierError) as e:
            errors.append(e)
            gate.abort()
        finally:
            conn.close()

    threads = [threading.Thread(target=upload) for _ in range(n)]
    for th in threads:
        th.start()
    peak = idle
    with contextlib.suppress(threading.BrokenBarrierError):
        gate.wait()
    while any(th.is_alive() for th in threads):
        peak = max(peak, rss())
        time.sleep(every)
    for th in threads:
        th.join()
    if errors:
        print(f"    memory: {len(errors)} failed, first: {errors[0]!r}", flush=True)
    return {"peak MiB": peak / 2**20, "idle MiB": idle / 2**20}, len(errors)


# ---------------------------------------------------------------- asyncio client
#
# Callback-driven: every response is parsed in data_received and the next
# request is written from there, with no future or coroutine per request.


class Driver(abc.ABC):
    """Decides what a connection sends next; records latencies and failures."""

    def __init__(self) -> None:
        self.lat: list[float] = []
        self.failures = 0

    def fail(self, what: str) -> None:
        self.failures += 1
        if self.failures <= 3:
            print(f"    error: {what}", flush=True)

    @abc.abstractmethod
    def next(self, conn: Conn, status: int | None, head: bytes) -> tuple[bytes, ...] | None:
        """The request after this response (status None: first); None ends the connection."""


class Conn(asyncio.Protocol):
    def __init__(self, driver: Driver, closed: Callable[[bool], None]) -> None:
        self.driver, self.closed = driver, closed
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.head_request = False
        self.done = False
        self.t0 = 0.0  # start of the current upload/request
        self.step = 0  # driver state

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send(self.driver.next(self, None, b""))

    def send(self, parts: tuple[bytes, ...] | None) -> None:
        assert self.transport is not None
        if parts is None:
            self.done = True
            self.transport.close()
        else:
            self.head_request = parts[0].startswith(b"HEAD ")
            self.transport.writelines(parts)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while not self.done and (res := parse_response(self.buf, self.head_request)):
            del self.buf[: res[2]]
            self.send(self.driver.next(self, res[0], res[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self.driver.fail(f"connection lost: {exc!r}")
        self.closed(self.done)


async def drive(t: Target, conns: int, driver: Driver, timeout: float = 900.0) -> None:
    """Run driver over `conns` connections until each one is done."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()
    live = 0
    reopening: set[asyncio.Task[None]] = set()

    def closed(clean: bool) -> None:
        nonlocal live
        live -= 1
        if not clean:  # the server dropped us: carry on with a new connection
            task = loop.create_task(open_one())
            reopening.add(task)
            task.add_done_callback(reopening.discard)
        elif live == 0 and not finished.done():
            finished.set_result(None)

    async def open_one() -> None:
        nonlocal live
        live += 1
        try:
            await loop.create_connection(lambda: Conn(driver, closed), t.host, t.port)
        except OSError as e:
            if not finished.done():
                finished.set_exception(e)

    await asyncio.gather(*(open_one() for _ in range(conns)))
    await asyncio.wait_for(finished, timeout)


def run_async(coro: Coroutine[Any, Any, tuple[Metrics, int]]) -> tuple[Metrics, int]:
    factory = uvloop.new_event_loop if uvloop else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def _summary(d: Driver, rate: str, secs: float) -> tuple[Metrics, int]:
    return {
        rate: len(d.lat) / secs,
        "p50 ms": _pct(d.lat, 50) * 1e3,
        "p99 ms": _pct(d.lat, 99) * 1e3,
    }, d.failures


class SmallDriver(Driver):
    def __init__(self, t: Target, n: int, size: int, cwu: bool) -> None:
        super().__init__()
        self.t, self.todo, self.size, self.cwu = t, n, size, cwu
        self.body = os.urandom(size)
        self.post = request_bytes("POST", t, t.base, {"Upload-Length": size, "Content-Length": 0})
        self.post_cwu = request_bytes(
            "POST", t, t.base, {"Upload-Length": size, "Content-Type": OCTET, "Content-Length": size}
        )
        self.want = str(size).encode()

    def next(self, conn: Conn, status: int | None, head: bytes) -> tuple[bytes, ...] | None:
        now = time.perf_counter()
        if status is not None and conn.step == 0 and not self.cwu:  # POST answered
            if status == 201 and (loc := header(head, b"location")):
                conn.step = 1
                patch = request_bytes(
                    "PATCH",
                    self.t,
                    urlsplit(loc.decode()).path,
                    {"Upload-Offset": 0, "Content-Type": OCTET, "Content-Length": self.size},
                )
                return patch, self.body
            self.fail(f"POST: HTTP {status}")
        elif status is not None:  # PATCH (or POST with body) answered
            ok = status == (201 if self.cwu else 204)
            if ok and self.t.verify and header(head, b"upload-offset") != self.want:
                ok = False
            if ok:
                self.lat.append(now - conn.t0)
            else:
                self.fail(f"upload: HTTP {status}, Upload-Offset {header(head, b'upload-offset')!r}")
        if self.todo <= 0:
            return None
        self.todo -= 1
        conn.t0, conn.step = now, 0
        return (self.post_cwu, self.body) if self.cwu else (self.post,)


async def small(t: Target, n: int, size: int, conc: int, cwu: bool) -> tuple[Metrics, int]:
    """n uploads of `size` bytes, conc at a time: POST+PATCH, or one POST (cwu)."""
    d = SmallDriver(t, n, size, cwu)
    t0 = time.perf_counter()
    await drive(t, conc, d)
    return _summary(d, "uploads/s", time.perf_counter() - t0)


class HeadDriver(Driver):
    def __init__(self, req: bytes, deadline: float) -> None:
        super().__init__()
        self.req, self.deadline = (req,), deadline

    def next(self, conn: Conn, status: int | None, head: bytes) -> tuple[bytes, ...] | None:
        now = time.perf_counter()
        if status == 200:
            self.lat.append(now - conn.t0)
        elif status is not None:
            self.fail(f"HEAD: HTTP {status}")
        if now >= self.deadline:
            return None
        conn.t0 = now
        return self.req


async def head(t: Target, duration: float, conc: int) -> tuple[Metrics, int]:
    """HEAD on one upload from conc keep-alive connections for `duration` seconds."""
    path = _once(t, lambda c: c.create(65536))
    t0 = time.perf_counter()
    d = HeadDriver(request_bytes("HEAD", t, path, {}), t0 + duration)
    await drive(t, conc, d)
    return _summary(d, "req/s", time.perf_counter() - t0)


LOAD_CLIENT_SOURCE = Path(__file__).with_name("loadclient.c")


def build_load_client(cache: Path) -> Path | None:
    """Compile loadclient.c into the cache (again when the source changed); None without a C compiler."""
    exe = cache / "loadclient"
    if exe.exists() and exe.stat().st_mtime >= LOAD_CLIENT_SOURCE.stat().st_mtime:
        return exe
    cc = next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if cc is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    res = subprocess.run([cc, "-O2", "-o", str(exe), str(LOAD_CLIENT_SOURCE)], capture_output=True)
    if res.returncode:
        print(f"[setup] {cc} failed on {LOAD_CLIENT_SOURCE.name}:\n{res.stderr.decode()}", flush=True)
        return None
    return exe


def _native(exe: Path, args: list[str], rate: str, timeout: float) -> tuple[Metrics, int]:
    out = subprocess.run([str(exe), *args], capture_output=True, text=True, check=False, timeout=timeout)
    if out.returncode:
        raise HTTPError(f"loadclient exited {out.returncode}: {out.stderr.strip()}")
    for line in out.stderr.splitlines()[:3]:
        print(f"    error: {line}", flush=True)
    ok, failures, secs, p50, p99 = out.stdout.split()
    metrics = {rate: int(ok) / float(secs), "p50 ms": float(p50) * 1e3, "p99 ms": float(p99) * 1e3}
    return metrics, int(failures)


def small_uploads(t: Target, n: int, size: int, conc: int, cwu: bool, exe: Path | None) -> tuple[Metrics, int]:
    """The small workload with the compiled client ``exe``, or the Python one without it."""
    if exe is not None:
        return small_native(t, n, size, conc, cwu, exe)
    return run_async(small(t, n, size, conc, cwu))


def heads(t: Target, duration: float, conc: int, exe: Path | None) -> tuple[Metrics, int]:
    """The head workload with the compiled client ``exe``, or the Python one without it."""
    if exe is not None:
        return head_native(t, duration, conc, exe)
    return run_async(head(t, duration, conc))


def head_native(t: Target, duration: float, conc: int, exe: Path) -> tuple[Metrics, int]:
    """The head workload driven by the compiled client (same requests, same measures)."""
    path = _once(t, lambda c: c.create(65536))
    args = ["head", t.host, str(t.port), str(conc), str(duration), path]
    return _native(exe, args, "req/s", duration + 60)


def small_native(t: Target, n: int, size: int, conc: int, cwu: bool, exe: Path) -> tuple[Metrics, int]:
    """The small workloads driven by the compiled client (same requests, same measures)."""
    args = ["cwu" if cwu else "small", t.host, str(t.port), str(conc), str(n), str(size), t.base]
    args += [] if t.verify else ["noverify"]
    return _native(exe, args, "uploads/s", 900)
