"""Cheap load-generating clients: curl, blocking sockets with sendfile, raw asyncio.

Each workload returns (metrics, failures). HTTP/1.1 is hand-written on purpose:
the client shares the two cores with the server and must stay cheap.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # pragma: no cover - plain asyncio works too, a bit slower
    uvloop = None

Metrics = dict[str, float]
MB = 1e6
OCTET = "application/offset+octet-stream"


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
        self.sock.sendall(request_bytes("POST", self.t, self.t.base, {
            "Upload-Length": length, "Content-Length": 0}))
        status, head = self.response()
        _check(status, 201, "POST")
        return location_path(head)

    def patch(self, path: str, f: Any, offset: int, count: int) -> None:
        self.sock.sendall(request_bytes("PATCH", self.t, path, {
            "Upload-Offset": offset, "Content-Type": OCTET, "Content-Length": count}))
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


def stream(t: Target, src: Path, size: int) -> tuple[Metrics, int]:
    """POST, then one PATCH of the whole file with curl; MB/s of the PATCH."""
    conn = SyncConn(t)
    try:
        path = conn.create(size)
        # `-T` streams the file; `--data-binary @file` loads it in memory (and
        # curl refuses files >= 1 GiB that way).
        res = subprocess.run([
            "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
            "-X", "PATCH", "-T", str(src), "-H", "Tus-Resumable: 1.0.0",
            "-H", "Upload-Offset: 0", "-H", f"Content-Type: {OCTET}", "-H", "Expect:",
            "--max-time", "600", f"http://{t.hostport}{path}",
        ], capture_output=True, text=True)
        code, secs = res.stdout.split() if res.stdout else ("000", "0")
        if code != "204":
            raise HTTPError(f"curl PATCH: HTTP {code} {res.stderr.strip()}")
        if t.verify and (got := conn.offset(path)) != size:
            raise HTTPError(f"HEAD after PATCH: offset {got} != {size}")
    finally:
        conn.close()
    return {"MB/s": size / MB / float(secs)}, 0


def chunked(t: Target, src: Path, size: int, chunk: int) -> tuple[Metrics, int]:
    """POST, then size/chunk PATCHes on one keep-alive connection."""
    conn = SyncConn(t)
    try:
        with open(src, "rb") as f:
            path = conn.create(size)
            t0 = time.perf_counter()
            for off in range(0, size, chunk):
                conn.patch(path, f, off, min(chunk, size - off))
            secs = time.perf_counter() - t0
    finally:
        conn.close()
    return {"MB/s": size / MB / secs}, 0


def memory(
    t: Target, src: Path, n: int, size: int, rss: Callable[[], int], every: float = 0.05,
) -> tuple[Metrics, int]:
    """n uploads of `size` bytes PATCHed at once (threads + sendfile); RSS sampled."""
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
    try:
        gate.wait()
    except threading.BrokenBarrierError:
        pass
    while any(th.is_alive() for th in threads):
        peak = max(peak, rss())
        time.sleep(every)
    for th in threads:
        th.join()
    if errors:
        print(f"    memory: {len(errors)} failed, first: {errors[0]!r}", flush=True)
    return {"peak MiB": peak / 2**20, "idle MiB": idle / 2**20}, len(errors)


# ---------------------------------------------------------------- asyncio client


class AsyncConn(asyncio.Protocol):
    """One keep-alive connection, one request in flight; parses headers only."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.head_request = False
        self.closed = False

    @classmethod
    async def open(cls, t: Target) -> AsyncConn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, t.host, t.port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter and (res := parse_response(self.buf, self.head_request)):
            del self.buf[: res[2]]
            self.waiter.set_result((res[0], res[1]))
            self.waiter = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(HTTPError(f"connection lost: {exc}"))

    async def request(self, *parts: bytes, head_request: bool = False) -> tuple[int, bytes]:
        assert self.transport is not None
        if self.closed:
            raise HTTPError("connection closed")
        self.head_request = head_request
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.writelines(parts)
        return await self.waiter

    def close(self) -> None:
        if self.transport:
            self.transport.close()


def run_async(coro: Coroutine[Any, Any, tuple[Metrics, int]]) -> tuple[Metrics, int]:
    factory = uvloop.new_event_loop if uvloop else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


async def _pool(t: Target, n: int, work: Callable[[AsyncConn], Coroutine[Any, Any, bool]]) -> int:
    """n connections each running work() until it returns False; returns failures."""
    failures = 0

    async def worker() -> None:
        nonlocal failures
        conn = await AsyncConn.open(t)
        try:
            while True:
                try:
                    if not await work(conn):
                        return
                except (OSError, HTTPError, ValueError) as e:
                    failures += 1
                    if failures <= 3:
                        print(f"    error: {e!r}", flush=True)
                    if conn.closed:
                        conn = await AsyncConn.open(t)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(n)))
    return failures


async def small(t: Target, n: int, size: int, conc: int, cwu: bool) -> tuple[Metrics, int]:
    """n uploads of `size` bytes, conc at a time: POST+PATCH, or one POST (cwu)."""
    body = os.urandom(size)
    post = request_bytes("POST", t, t.base, {"Upload-Length": size, "Content-Length": 0})
    post_cwu = request_bytes("POST", t, t.base, {
        "Upload-Length": size, "Content-Type": OCTET, "Content-Length": size})
    want = str(size).encode()
    lat: list[float] = []
    todo = n

    async def one(conn: AsyncConn) -> bool:
        nonlocal todo
        if todo <= 0:
            return False
        todo -= 1
        t0 = time.perf_counter()
        if cwu:
            status, head = await conn.request(post_cwu, body)
            _check(status, 201, "POST")
        else:
            status, head = await conn.request(post)
            _check(status, 201, "POST")
            patch = request_bytes("PATCH", t, location_path(head), {
                "Upload-Offset": 0, "Content-Type": OCTET, "Content-Length": size})
            status, head = await conn.request(patch, body)
            _check(status, 204, "PATCH")
        if t.verify and header(head, b"upload-offset") != want:
            raise HTTPError(f"Upload-Offset {header(head, b'upload-offset')!r} != {size}")
        lat.append(time.perf_counter() - t0)
        return True

    t0 = time.perf_counter()
    failures = await _pool(t, conc, one)
    secs = time.perf_counter() - t0
    return {
        "uploads/s": len(lat) / secs,
        "p50 ms": _pct(lat, 50) * 1e3,
        "p99 ms": _pct(lat, 99) * 1e3,
    }, failures


async def head(t: Target, duration: float, conc: int) -> tuple[Metrics, int]:
    """HEAD on one upload from conc keep-alive connections for `duration` seconds."""
    conn = await AsyncConn.open(t)
    status, resp = await conn.request(request_bytes("POST", t, t.base, {
        "Upload-Length": 65536, "Content-Length": 0}))
    conn.close()
    _check(status, 201, "POST")
    req = request_bytes("HEAD", t, location_path(resp), {})
    lat: list[float] = []
    deadline = time.perf_counter() + duration

    async def one(conn: AsyncConn) -> bool:
        t0 = time.perf_counter()
        if t0 >= deadline:
            return False
        status, resp = await conn.request(req, head_request=True)
        _check(status, 200, "HEAD")
        lat.append(time.perf_counter() - t0)
        return True

    t0 = time.perf_counter()
    failures = await _pool(t, conc, one)
    secs = time.perf_counter() - t0
    return {
        "req/s": len(lat) / secs,
        "p50 ms": _pct(lat, 50) * 1e3,
        "p99 ms": _pct(lat, 99) * 1e3,
    }, failures
