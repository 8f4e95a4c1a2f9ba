#!/usr/bin/env python3
"""S3 side by side: boto3's own multipart upload, pytusd on S3 and @tus/s3-store, on one Swift.

    PYTHONPATH=$PWD/src:$PWD .venv/bin/python bench/s3.py [--rounds 5] [--size 512M]
        [--contestants boto3,boto3-serial,pytusd,tus-node-s3] [--pytusd-variant NAME=--flag,--flag ...]
        [--workloads stream,chunked] [--memory | --no-memory] [--out docs/benchmarks.md]

One Swift (tests/services/swift.py) serves every contestant, each in its own bucket. Every round
runs each workload on every contestant in turn, the order rotated by one each round; every
object is read back from Swift and compared with the source (a mismatch stops the run). The
report replaces the S3 section of the output file (between S3_BEGIN and S3_END), after the part
that bench/run.py keeps. See bench/README.md, section S3.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import gc
import hashlib
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from statistics import median
from typing import Any

import clients
import report
import run
import servers
from clients import Target

MiB = 2**20
MB = 1e6
WORKLOADS = ("stream", "chunked")
BASELINE, PEER = "boto3", "tus-node-s3"
#: boto3 with one part at a time: what the S3 server allows a client that waits for each part, as a
#: chunked tus client waits for each PATCH (a reference, not a goal).
SERIAL = "boto3-serial"
S3_BEGIN, S3_END = "<!-- s3-bench:begin -->", "<!-- s3-bench:end -->"
#: Goals (reported, not asserted) of every pytusd contestant: (workload, versus, at least).
RATIO_GOALS = [("stream", BASELINE, 0.85), ("chunked", BASELINE, 0.6), ("stream", PEER, 1.5), ("chunked", PEER, 1.5)]
RSS_GOAL_MIB = 200.0
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,40}")  # a contestant's name; its bucket is s3bench-<name>


class VerifyError(Exception):
    """An object in Swift differs from what was uploaded: the run stops."""


class UploadError(Exception):
    """The contestant reported a failed upload."""


def parse_size(text: str) -> int:
    """'512M' -> 512 MiB; suffixes K, M, G are binary (KiB, MiB, GiB); no suffix: bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M)")
    return int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2).upper()]


def mib(n: int) -> str:
    return f"{n / MiB:g} MiB"


# ---------------------------------------------------------------- contestants


def swift_cpu() -> float:
    """CPU seconds of Swift's processes (proxy, account, container, object servers, memcached)."""
    return sum(servers.tree_cpu(pid) for pid in servers.swift_pids())


class Contestant(abc.ABC):
    """One uploader under test, with its own bucket."""

    kind = ""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bucket = f"s3bench-{name}"

    @abc.abstractmethod
    def start(self) -> None:
        """Start (or restart) it; raise servers.Unavailable with the reason."""

    @abc.abstractmethod
    def stop(self) -> None: ...

    @property
    @abc.abstractmethod
    def pid(self) -> int: ...

    @property
    @abc.abstractmethod
    def alive(self) -> bool: ...

    def cpu(self) -> float:
        """CPU seconds of its process tree (Swift's are counted apart)."""
        return servers.tree_cpu(self.pid)

    @abc.abstractmethod
    def upload(self, workload: str, src: Path, size: int, chunk: int) -> tuple[float, str]:
        """Upload src (size bytes) the workload's way: (MB/s, key of the object in its bucket)."""

    def spool_files(self) -> int | None:
        """Files left in its private TMPDIR (None: it has none)."""
        return None

    @abc.abstractmethod
    def describe(self) -> str:
        """What it is, for the report."""

    @abc.abstractmethod
    def versions(self) -> dict[str, str]: ...

    def log_tail(self) -> str:
        return ""


class Boto3(Contestant):
    """boto3's upload_file (8 MiB parts, ``concurrency`` at a time) in its own long-lived process:
    bench/peers/boto3_upload.py."""

    kind = "boto3"
    script = servers.BENCH / "peers" / "boto3_upload.py"

    def __init__(self, name: str = BASELINE, concurrency: int = 10) -> None:
        super().__init__(name)
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = servers.LOGS / f"{self.name}.log"
        self._buf = b""

    def start(self) -> None:
        swift = servers.shared_swift()
        swift.create_bucket(self.bucket)
        servers.LOGS.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(self.script), swift.endpoint_url, self.bucket, str(self.concurrency)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        self._buf = b""
        try:
            line = self._readline(60)
        except (OSError, TimeoutError) as exc:
            line = repr(exc)
        if line != "ready":
            self.stop()
            raise servers.Unavailable(f"{self.script.name} did not start ({line}):\n{self.log_tail()}")

    def _readline(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"no answer from {self.name} in {timeout:.0f} s")
            data = os.read(fd, 65536)
            if not data:
                raise OSError(f"{self.name} exited (code {self.proc.wait()})")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace").strip()

    def upload(self, workload: str, src: Path, size: int, chunk: int) -> tuple[float, str]:
        assert self.proc is not None and self.proc.stdin is not None
        if src.stat().st_size != size:
            raise ValueError(f"{src} is not {size} bytes")
        key = f"{workload}-{uuid.uuid4().hex}"
        self.proc.stdin.write(f"{key} {src}\n".encode())
        self.proc.stdin.flush()
        try:
            answer = self._readline(900)
        except TimeoutError:
            self.stop()  # its answer would come later, to the next upload: restarted before that
            raise
        status, _, rest = answer.partition(" ")
        if status != "ok":
            raise UploadError(f"upload_file: {rest or answer}")
        return size / MB / float(rest), key

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def describe(self) -> str:
        serial = (
            " One part at a time: the S3 server's rate for a client that waits for each part, as a chunked tus "
            "client waits for each PATCH (a reference; the goals are against ten at a time)."
            if self.concurrency == 1
            else ""
        )
        return (
            "boto3 `upload_file` with `TransferConfig(multipart_threshold=8 MiB, multipart_chunksize=8 MiB, "
            f"max_concurrency={self.concurrency})`, the client configured as the tests configure theirs for Swift "
            "(`S3_CONFIG_KWARGS`: path-style, checksums only when required); a long-lived process of its own "
            "(`bench/peers/boto3_upload.py`), MB/s over the `upload_file` call. The same call in both workloads."
            + serial
        )

    def versions(self) -> dict[str, str]:
        return {p: _pkg(p) for p in ("boto3", "botocore", "s3transfer")}

    def log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        except OSError:
            return ""


class TusServer(Contestant):
    """A tus server storing on the run's Swift, started through bench/servers.py."""

    def __init__(self, spec: servers.PytusdS3 | servers.TusNodeS3, key_prefix: str) -> None:
        super().__init__(spec.name)
        self.spec, self.key_prefix = spec, key_prefix
        self.kind = "pytusd" if isinstance(spec, servers.PytusdS3) else PEER
        self.running: servers.Running | None = None

    def start(self) -> None:
        self.running = servers.start(self.spec)

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()

    @property
    def pid(self) -> int:
        assert self.running is not None
        return self.running.proc.pid

    @property
    def alive(self) -> bool:
        return self.running is not None and self.running.alive

    @property
    def target(self) -> Target:
        assert self.running is not None
        return Target("127.0.0.1", self.running.port)

    def key(self, upload_path: str) -> str:
        """The object key of an upload, from its URL path: the prefix and the upload ID."""
        t = self.target
        if not upload_path.startswith(t.base):
            raise UploadError(f"Location {upload_path!r} is not under {t.base}")
        return self.key_prefix + upload_path.removeprefix(t.base)

    def upload(self, workload: str, src: Path, size: int, chunk: int) -> tuple[float, str]:
        created: list[str] = []
        if workload == "stream":
            if src.stat().st_size != size:
                raise ValueError(f"{src} is not {size} bytes (curl sends all of it)")
            metrics, failures = clients.stream(self.target, src, size, created)
        else:
            metrics, failures = clients.chunked(self.target, src, size, chunk, created)
        if failures or not created:
            raise UploadError(f"{failures} failures")
        return metrics["MB/s"], self.key(created[0])

    def spool_files(self) -> int | None:
        assert self.running is not None
        return count_files(servers.private_tmpdir(self.running.tmp))

    def describe(self) -> str:
        endpoint = servers.shared_swift().endpoint_url
        cmd = self.spec.command(0, Path("DIR"), Path("TMP"))
        cmd = [Path(a).name if a.startswith("/") and Path(a).exists() else a for a in cmd]
        cmd = ["PORT" if a == "0" else "http://127.0.0.1:SWIFT" if a == endpoint else a for a in cmd]
        how = f"`{shlex.join(cmd)}`"
        if self.kind == "pytusd":
            return (
                f"{how}, with the S3 credentials in its environment (`AWS_*`); pytusd's own defaults otherwise. "
                "Object key: the prefix and the upload ID."
            )
        return (
            f"npm `@tus/server` with `@tus/s3-store` (`bench/peers/tus_node_s3_server.mjs`, installed with exact pins "
            f"into `bench/.cache/node`): {how}; `partSize` 8 MiB (the store's default, stated), `forcePathStyle`, "
            "`requestChecksumCalculation` and `responseChecksumValidation` `WHEN_REQUIRED` (the AWS SDK's default "
            "sends aws-chunked bodies, which Swift's s3api refuses). Object key: the upload ID."
        )

    def versions(self) -> dict[str, str]:
        return self.spec.versions()

    def log_tail(self) -> str:
        return self.running.log_tail() if self.running is not None else ""


def count_files(root: Path) -> int:
    return sum(len(files) for _dir, _dirs, files in os.walk(root))


def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def make_contestants(names: list[str], variants: dict[str, tuple[str, ...]]) -> list[Contestant]:
    out: list[Contestant] = []
    for name in names:
        if name == BASELINE:
            out.append(Boto3())
        elif name == SERIAL:
            out.append(Boto3(SERIAL, concurrency=1))
        elif name == PEER:
            out.append(
                TusServer(servers.TusNodeS3(name, f"s3bench-{name}"), "")
            )  # @tus/s3-store keys an upload's object by its ID, no prefix
        else:
            flags = variants.get(name, ())
            out.append(TusServer(servers.PytusdS3(name, f"s3bench-{name}", flags, prefix="uploads/"), "uploads/"))
    return out


# ---------------------------------------------------------------- Swift objects


class Bucket:
    """The harness's own view of the contestants' buckets: read back, compare, empty."""

    def __init__(self) -> None:
        self.client = servers.shared_swift().client()

    def verify(self, bucket: str, key: str, size: int, digest: str) -> None:
        """Read the object back and compare its SHA-256 with the source's; raise VerifyError."""
        try:
            obj = self.client.get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise VerifyError(f"s3://{bucket}/{key}: cannot read it back: {exc}") from exc
        h, n = hashlib.sha256(), 0
        for part in obj["Body"].iter_chunks(MiB):
            h.update(part)
            n += len(part)
        if n != size or h.hexdigest() != digest:
            raise VerifyError(
                f"s3://{bucket}/{key}: {n} bytes, sha256 {h.hexdigest()}; the source has {size} bytes, sha256 {digest}"
            )

    def empty(self, bucket: str) -> int:
        """Delete every object and abort every multipart upload in the bucket; the number of objects."""
        keys = [
            o["Key"]
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])
        ]
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            self.client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        for up in self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            self.client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        return len(keys)


def swift_disk_bytes() -> int:
    """Bytes in Swift's object/container/account dirs (do deletions free the disk?)."""
    root = servers.shared_swift().directory / "srv"
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(dirpath, f)).st_size
    return total


# ---------------------------------------------------------------- measuring


@dataclass
class Record:
    round: int
    workload: str  # stream, chunked or memory
    contestant: str
    metrics: dict[str, float] = field(default_factory=dict)  # MB/s; memory: peak RSS and more
    wall: float = 0.0
    contestant_cpu: float = 0.0
    swift_cpu: float = 0.0
    client_cpu: float = 0.0  # the harness and curl
    kernel_cpu: float = 0.0
    other_cpu: float = 0.0
    spool_files: int | None = None
    verified: int = 0  # objects read back and found equal to the source
    attempts: int = 1
    error: str = ""


@dataclass
class Source:
    path: Path
    size: int
    sha256: str


def source(size: int) -> Source:
    path = run.source_file(size)
    with open(path, "rb") as f:
        return Source(path, size, hashlib.file_digest(f, "sha256").hexdigest())


class Counters:
    """CPU counters around one measurement (run.py's, plus Swift's apart from the contestant's)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = time.perf_counter()
        self.start = self.read()

    def read(self) -> tuple[float, ...]:
        return run.client_cpu(), servers.tree_cpu(self.pid), swift_cpu(), run.kernel_cpu(), run.busy_cpu()

    def into(self, rec: Record) -> None:
        rec.wall = time.perf_counter() - self.t0
        c, p, s, k, b = (after - before for after, before in zip(self.read(), self.start, strict=True))
        rec.client_cpu, rec.contestant_cpu, rec.swift_cpu, rec.kernel_cpu = c, p, s, k
        rec.other_cpu = max(0.0, b - c - p - s - k)


def settle(max_wait: float) -> None:
    os.sync()
    gc.collect()
    waited = run.wait_quiet(max_wait)
    if waited > 1:
        print(f"  (waited {waited:.0f} s for the machine to be idle)", flush=True)


def measure(rnd: int, wl: str, c: Contestant, src: Source, args: argparse.Namespace, swift: Bucket) -> Record:
    rec = Record(rnd, wl, c.name)
    settle(args.max_wait_idle)
    counters = Counters(c.pid)
    key = ""
    try:
        mbps, key = c.upload(wl, src.path, src.size, args.chunk)
        rec.metrics["MB/s"] = mbps
    except (OSError, TimeoutError, clients.HTTPError, UploadError) as e:  # recorded, the run goes on
        rec.error = f"{type(e).__name__}: {e}"
    counters.into(rec)
    try:
        if key:
            swift.verify(c.bucket, key, src.size, src.sha256)
            rec.verified = 1
        rec.spool_files = c.spool_files()
    finally:
        swift.empty(c.bucket)
    return rec


def describe(rec: Record) -> str:
    vals = ", ".join(f"{v:.1f} {k}" for k, v in rec.metrics.items()) or "-"
    spool = "" if rec.spool_files is None else f" spool files {rec.spool_files}"
    err = f" ERROR {rec.error}" if rec.error else ""
    return (
        f"  r{rec.round} {rec.workload:8} {rec.contestant:14} {vals} | cpu {rec.contestant_cpu:.2f}s"
        f" swift {rec.swift_cpu:.2f}s client {rec.client_cpu:.2f}s kernel {rec.kernel_cpu:.2f}s"
        f" other {rec.other_cpu:.2f}s, {rec.verified} verified{spool}{err}"
    )


def quietest(fn: Callable[[], Record], retries: int) -> Record:
    """fn(), repeated while other processes made it noisy (as bench/run.py does); the quietest counts."""
    tries: list[Record] = []
    while len(tries) <= retries:
        tries.append(fn())
        print(describe(tries[-1]), flush=True)
        if tries[-1].error or tries[-1].other_cpu <= run.NOISE_CORES * tries[-1].wall:
            break
        if len(tries) <= retries:
            print("  noisy (other processes were busy): measuring again", flush=True)
    rec = min(tries, key=lambda r: r.other_cpu / (r.wall or 1))
    rec.attempts = len(tries)
    return rec


def vm_hwm(pid: int) -> int:
    """Peak resident set size of the process (VmHWM), bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no VmHWM for {pid}")


def measure_memory(c: TusServer, src: Source, args: argparse.Namespace, swift: Bucket) -> Record:
    """A fresh server (so VmHWM covers only this), args.mem_n uploads of src at once, each on its own connection."""
    assert isinstance(c.spec, servers.PytusdS3)
    spec = servers.PytusdS3(f"{c.name}-memory", c.bucket, c.spec.flags, prefix=c.key_prefix)  # own log file
    rec = Record(0, "memory", c.name)
    fresh = TusServer(spec, c.key_prefix)
    fresh.start()
    assert fresh.running is not None
    try:
        settle(args.max_wait_idle)
        counters = Counters(fresh.pid)
        created: list[str] = []
        rss = fresh.running.rss
        try:
            metrics, failures = clients.memory(fresh.target, src.path, args.mem_n, src.size, rss, created=created)
            if failures:
                rec.error = f"{failures} of {args.mem_n} uploads failed"
        except (OSError, clients.HTTPError) as e:
            metrics, rec.error = {}, f"{type(e).__name__}: {e}"
        counters.into(rec)
        rec.metrics = {
            "VmHWM MiB": vm_hwm(fresh.pid) / MiB,
            "sampled peak MiB": metrics.get("peak MiB", float("nan")),
            "idle MiB": metrics.get("idle MiB", float("nan")),
            "MB/s": args.mem_n * src.size / MB / rec.wall,
        }
        rec.spool_files = fresh.spool_files()
        try:
            for path in [] if rec.error else created:  # after a failed upload: which one is unknown
                swift.verify(c.bucket, fresh.key(path), src.size, src.sha256)
                rec.verified += 1
        finally:
            swift.empty(c.bucket)
    finally:
        fresh.stop()
    return rec


def warm_up(c: Contestant, warm: Source, args: argparse.Namespace, swift: Bucket) -> None:
    """A small unmeasured upload of each kind (JITs, connection pools), read back: a broken setup fails here."""
    for wl in WORKLOADS:
        _mbps, key = c.upload(wl, warm.path, warm.size, args.chunk)
        swift.verify(c.bucket, key, warm.size, warm.sha256)
        swift.empty(c.bucket)


def run_rounds(live: list[Contestant], src: Source, args: argparse.Namespace, swift: Bucket) -> list[Record]:
    records: list[Record] = []
    for rnd in range(1, args.rounds + 1):
        print(f"[round {rnd}/{args.rounds}]", flush=True)
        order = [(rnd - 1 + k) % len(live) for k in range(len(live))]  # A B C, B C A, C A B, ...
        for wl in args.workloads:
            for i in order:
                c = live[i]
                if not c.alive:
                    print(f"  {c.name} died; restarting. Log tail:\n{c.log_tail()}", flush=True)
                    c.stop()
                    c.start()
                records.append(quietest(partial(measure, rnd, wl, c, src, args, swift), args.retries))
        print(f"  Swift's disk after emptying the buckets: {swift_disk_bytes() / MiB:.1f} MiB", flush=True)
    return records


# ---------------------------------------------------------------- report


def _fmt(x: float | None) -> str:
    return "—" if x is None else report._fmt(x)


def medians(recs: list[dict[str, Any]], wl: str, key: str = "MB/s") -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for r in recs:
        if r["workload"] == wl and key in r["metrics"]:
            by.setdefault(r["contestant"], []).append(r["metrics"][key])
    return {name: median(vals) for name, vals in by.items()}


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "—"


def workload_table(raw: dict[str, Any], wl: str) -> list[str]:
    recs = [r for r in raw["records"] if r["workload"] == wl]
    if not recs:
        return []
    p = raw["params"]
    what = {
        "stream": f"POST, then one PATCH of all {mib(p['size'])} sent by curl (`-T`); MB/s over the PATCH "
        "(curl's `time_total`), which is answered once the object is complete in S3.",
        "chunked": f"POST, then {mib(p['size'])} in {mib(p['chunk'])} PATCHes, one at a time on one keep-alive "
        "connection (`sendfile`); MB/s over the PATCHes.",
    }[wl]
    meds = medians(raw["records"], wl)
    cols = [
        "MB/s median",
        "min",
        "max",
        f"vs {BASELINE}",
        f"vs {SERIAL}",
        f"vs {PEER}",
        "CPU s",
        "Swift CPU s",
        "client CPU s",
    ]
    cols += ["other cores", "spool files left", "verified", "errors"]
    out = [f"### {wl}", "", what, "", "| contestant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name in raw["contestants"]:
        rows = [r for r in recs if r["contestant"] == name]
        if not rows:
            continue
        vals = [r["metrics"]["MB/s"] for r in rows if "MB/s" in r["metrics"]]
        med = meds.get(name)
        other = median(r["other_cpu"] / r["wall"] for r in rows if r["wall"]) if any(r["wall"] for r in rows) else 0.0
        spools = [r["spool_files"] for r in rows if r["spool_files"] is not None]
        cells = [_fmt(med), _fmt(min(vals)) if vals else "—", _fmt(max(vals)) if vals else "—"]
        cells += [ratio(med, meds.get(BASELINE)), ratio(med, meds.get(SERIAL)), ratio(med, meds.get(PEER))]
        cells += [_fmt(median(r[k] for r in rows)) for k in ("contestant_cpu", "swift_cpu", "client_cpu")]
        cells += [f"{other:.2f}" + (" ⚠" if other > raw["noise_cores"] else "")]
        cells += [str(max(spools)) if spools else "—", f"{sum(r['verified'] for r in rows)}/{len(rows)}"]
        cells += [str(sum(bool(r["error"]) for r in rows))]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*out, ""]


def memory_table(raw: dict[str, Any]) -> list[str]:
    recs = [r for r in raw["records"] if r["workload"] == "memory"]
    if not recs:
        return []
    p = raw["params"]
    out = [
        "### memory",
        "",
        f"A fresh server, then {p['mem_n']} uploads of {mib(p['mem_size'])} at once, each a POST and one PATCH on "
        "its own connection (threads, `sendfile`). Peak RSS is the server process's VmHWM (`/proc/PID/status`) "
        f"read afterwards; the tree's RSS was also sampled every 50 ms. Goal: under {RSS_GOAL_MIB:.0f} MiB.",
        "",
        "| contestant | peak RSS (VmHWM) MiB | sampled peak MiB | idle MiB | goal | MB/s (all uploads) | CPU s "
        "| Swift CPU s | other cores | spool files left | verified | errors |",
        "|---" * 12 + "|",
    ]
    for r in recs:
        m = r["metrics"]
        hwm = m.get("VmHWM MiB")
        goal = "—" if hwm is None else ("PASS" if hwm < RSS_GOAL_MIB else "MISS")
        cells = [_fmt(hwm), _fmt(m.get("sampled peak MiB")), _fmt(m.get("idle MiB")), goal, _fmt(m.get("MB/s"))]
        other = r["other_cpu"] / r["wall"] if r["wall"] else 0.0
        cells += [_fmt(r["contestant_cpu"]), _fmt(r["swift_cpu"])]
        cells += [f"{other:.2f}" + (" ⚠" if other > raw["noise_cores"] else ""), str(r["spool_files"])]
        cells += [f"{r['verified']}/{p['mem_n']}", r["error"] or "0"]
        out.append(f"| {r['contestant']} | " + " | ".join(cells) + " |")
    return [*out, ""]


def goals(raw: dict[str, Any]) -> list[str]:
    out = ["### Goals", "", "Reported, not asserted; computed from the medians above."]
    out.append("")
    meds = {wl: medians(raw["records"], wl) for wl in WORKLOADS}
    mem = {r["contestant"]: r["metrics"].get("VmHWM MiB") for r in raw["records"] if r["workload"] == "memory"}
    for name, kind in raw["contestants"].items():
        if kind != "pytusd":
            continue
        for wl, versus, least in RATIO_GOALS:
            a, b = meds[wl].get(name), meds[wl].get(versus)
            if a is None or not b:
                out.append(f"- {name} {wl} ≥ {least:g} x {versus}: not measured")
                continue
            verdict = "PASS" if a / b >= least else "MISS"
            out.append(f"- {name} {wl} ≥ {least:g} x {versus}: {a / b:.2f} ({_fmt(a)} / {_fmt(b)} MB/s) — {verdict}")
        a, b = meds["chunked"].get(name), meds["chunked"].get(SERIAL)
        if a is not None and b:
            out.append(
                f"- {name} chunked against {SERIAL} (one part at a time; a reference, not a goal): {a / b:.2f} "
                f"({_fmt(a)} / {_fmt(b)} MB/s)"
            )
        hwm = mem.get(name)
        if hwm is None:
            out.append(f"- {name} peak RSS < {RSS_GOAL_MIB:.0f} MiB: not measured")
        else:
            n, size = raw["params"]["mem_n"], mib(raw["params"]["mem_size"])
            verdict = "PASS" if hwm < RSS_GOAL_MIB else "MISS"
            out.append(f"- {name} peak RSS < {RSS_GOAL_MIB:.0f} MiB ({n} x {size} at once): {hwm:.1f} MiB — {verdict}")
    return [*out, ""]


def render(raw: dict[str, Any]) -> str:
    m = raw["machine"]
    started = raw["started"].replace("T", " ").replace("+00:00", " UTC")
    out = [
        S3_BEGIN,
        "## S3: pytusd, boto3 and @tus/s3-store on one Swift (bench/s3.py)",
        "",
        "Generated by `bench/s3.py`, which rewrites this section (up to the matching end marker) on every run; "
        "`bench/run.py` keeps it (it comes after the hand-written marker).",
        "",
        f"Run {started} at git `{raw['git']}`: `{raw['command']}`. {raw['rounds']} round"
        f"{'s' * (raw['rounds'] != 1)}; in each round every workload runs on every contestant in turn, the order "
        "rotated by one each round (A B C, B C A, …); before each measurement the machine must be idle; after it "
        "the object is read back from Swift and its SHA-256 compared with the source's (a mismatch stops the run), "
        "then the bucket is emptied.",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} cores (nproc), {m['memory']} RAM, {m['kernel']}. Contestants, Swift "
        "and the client share these cores.",
        "",
        "Versions: "
        + "; ".join(f"{k} {v}".replace(f"{servers.ROOT}/", "./") for k, v in raw["versions"].items())
        + ".",
        "",
        "All on one single-node Swift with s3api (`tests/services/swift.py`: one proxy, account, container and "
        "object server, no workers, on this machine), one bucket per contestant:",
        "",
        *(f"- **{name}**: {what}" for name, what in raw["described"].items()),
        "",
    ]
    for name, why in raw["skipped"].items():
        out += [f"**{name} skipped**: {why}", ""]
    for wl in WORKLOADS:
        out += workload_table(raw, wl)
    out += memory_table(raw)
    out += goals(raw)
    out += [
        "How to read this: MB/s is 10^6 bytes per second, median/min/max over the rounds; `vs` columns divide "
        "medians. CPU s: user+system seconds of the contestant's process tree during the measurement (boto3: its "
        "own process); Swift CPU s: Swift's processes (and memcached), which work for whoever uploads; client "
        "CPU s: the harness and curl. other cores: the machine's other busy time per second (noise; ⚠ above "
        f"{raw['noise_cores']}, such measurements are repeated up to `--retries` times and the quietest kept). "
        "spool files left: files in the server's private TMPDIR after the upload (pytusd's `pytusd-s3-*` spool "
        "dir, @tus/s3-store's part files); the largest count over the rounds.",
    ]
    if repeated := [r for r in raw["records"] if r["attempts"] > 1]:
        out += [
            "",
            f"{len(repeated)} of {len(raw['records'])} measurements were repeated because other processes were busy "
            "(the quietest attempt is reported): "
            + ", ".join(f"{r['workload']}/{r['contestant']} r{r['round']} ({r['attempts']} tries)" for r in repeated)
            + ".",
        ]
    errors = sorted({f"{r['workload']}/{r['contestant']}: {r['error']}" for r in raw["records"] if r["error"]})
    if errors:
        out += ["", "Errors:", "", *(f"- {e}" for e in errors[:10])]
    return "\n".join([*out, S3_END]) + "\n"


def write_section(out: Path, section: str) -> None:
    """Replace the S3 section of the report, or append it (after run.py's marker, which keeps it)."""
    try:
        text = out.read_text()
    except FileNotFoundError:
        text = ""
    begin, end = text.find(S3_BEGIN), text.find(S3_END)
    if begin >= 0 and end > begin:
        text = text[:begin] + section + text[end + len(S3_END) :].removeprefix("\n")
    else:
        if run.KEEP_MARKER not in text:
            print(f"[note] {out} has no bench/run.py marker: run.py would drop this section", flush=True)
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    out.write_text(text)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=parse_size, default=512 * MiB, help="bytes per upload (default 512M = 512 MiB)")
    ap.add_argument("--chunk", type=parse_size, default=8 * MiB, help="PATCH size of chunked (default 8M)")
    ap.add_argument(
        "--contestants",
        default=f"{BASELINE},{SERIAL},pytusd,{PEER}",
        help=f"comma list of {BASELINE}, {SERIAL}, pytusd, {PEER} (default all); --pytusd-variant names are added",
    )
    ap.add_argument(
        "--pytusd-variant",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="another pytusd contestant with extra flags, comma separated, e.g. pytusd-p8=--s3-part-size,8M",
    )
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="peak RSS of every pytusd contestant under --mem-n concurrent uploads (default on)",
    )
    ap.add_argument("--mem-n", type=int, default=8, help="concurrent uploads of the memory workload (default 8)")
    ap.add_argument("--mem-size", type=parse_size, default=512 * MiB, help="bytes per memory upload (default 512M)")
    ap.add_argument("--out", default=str(servers.ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--max-wait-idle", type=float, default=60.0, metavar="S")
    ap.add_argument("--retries", type=int, default=2, metavar="N", help="repeat noisy measurements up to N times")
    ap.add_argument(
        "--from-json",
        metavar="RAW",
        help="measure nothing: write the section from an earlier run's raw results (bench/.cache/results/s3-*.json)",
    )
    args = ap.parse_args(argv)
    args.variants = {}
    for v in args.pytusd_variant:
        name, eq, flags = v.partition("=")
        if not eq or not NAME.fullmatch(name) or name in (BASELINE, SERIAL, "pytusd", PEER):
            ap.error(f"--pytusd-variant {v!r}: want NAME=--flag,--flag with a new lower-case NAME")
        args.variants[name] = tuple(f for f in flags.split(",") if f)
    args.contestants = [c for c in args.contestants.split(",") if c]
    args.contestants += [v for v in args.variants if v not in args.contestants]
    unknown = [c for c in args.contestants if c not in (BASELINE, SERIAL, "pytusd", PEER, *args.variants)]
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown += [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown contestant/workload {', '.join(unknown)}")
    if len(set(args.contestants)) != len(args.contestants):
        ap.error("a contestant is listed twice")
    return args


def git_rev() -> str:
    rev = servers._out(["git", "-C", str(servers.ROOT), "rev-parse", "--short", "HEAD"])
    dirty = servers._out(["git", "-C", str(servers.ROOT), "status", "--porcelain", "--untracked-files=no"])
    return rev + (" (with uncommitted changes)" if dirty else "")


def collect_versions(live: list[Contestant]) -> dict[str, str]:
    import importlib.util

    v = report.versions([])
    spec = importlib.util.find_spec("pytusd")
    for c in live:
        v.update(c.versions())
    if spec is not None and spec.origin:
        v["pytusd imported from"] = str(Path(spec.origin).parent.parent)
    v.pop("uvloop (client)", None)  # the S3 clients here are blocking sockets and curl
    return v


def main() -> int:
    args = parse_args()
    if args.from_json:
        write_section(Path(args.out), render(json.loads(Path(args.from_json).read_text())))
        print(f"[done] S3 section written to {args.out} from {args.from_json}", flush=True)
        return 0
    command = shlex.join(["python", "bench/s3.py", *sys.argv[1:]])
    started = datetime.now(UTC)
    revision = git_rev()  # the code the servers start from, not what the tree holds once the run ends
    src = source(args.size)
    warm = source(32 * MiB)
    mem_src = source(args.mem_size) if args.memory else None
    swift = servers.shared_swift()
    print(f"[setup] Swift on {swift.endpoint_url} ({swift.directory})", flush=True)
    bucket = Bucket()
    live: list[Contestant] = []
    skipped: dict[str, str] = {}
    records: list[Record] = []
    failed: BaseException | None = None
    try:
        for c in make_contestants(args.contestants, args.variants):
            try:
                c.start()
                print(f"[start] {c.name}, warming up", flush=True)
                warm_up(c, warm, args, bucket)
            except (servers.Unavailable, OSError, TimeoutError, clients.HTTPError, UploadError) as e:
                lines = [ln for ln in str(e).splitlines() if ln.strip()] or [""]
                skipped[c.name] = f"{type(e).__name__}: {lines[0]}" + (f" … {lines[-1]}" if len(lines) > 1 else "")
                print(f"[skip] {c.name}: {e}\n{c.log_tail()}", flush=True)
                c.stop()
                continue
            live.append(c)
        if not live:
            print("nothing to measure", flush=True)
            return 1
        versions = collect_versions(live)
        described = {c.name: c.describe() for c in live}
        try:
            records = run_rounds(live, src, args, bucket)
            if mem_src is not None:
                print("[memory]", flush=True)
                for c in live:
                    if isinstance(c, TusServer) and c.kind == "pytusd":
                        records.append(quietest(partial(measure_memory, c, mem_src, args, bucket), args.retries))
        except VerifyError as e:
            failed = e
        except Exception as e:
            traceback.print_exc()
            failed = e
    finally:
        for c in live:
            c.stop()
        swift_logs = swift.logs(20) if failed is not None else ""
        swift.stop()

    raw = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "git": revision,
        "rounds": args.rounds,
        "params": {"size": args.size, "chunk": args.chunk, "mem_n": args.mem_n, "mem_size": args.mem_size},
        "noise_cores": run.NOISE_CORES,
        **report.machine_info(),
        "versions": versions,
        "contestants": {c.name: c.kind for c in live},
        "described": described,
        "skipped": skipped,
        "records": [asdict(r) for r in records],
        "failed": repr(failed) if failed is not None else "",
    }
    results = servers.CACHE / "results"
    results.mkdir(parents=True, exist_ok=True)
    raw_path = results / f"s3-{started:%Y%m%dT%H%M%S}.json"
    raw_path.write_text(json.dumps(raw, indent=1))
    if failed is not None:
        print(f"\n[FAILED] {failed}\nSwift's logs:\n{swift_logs}\nraw results: {raw_path}", flush=True)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_section(out, render(raw))
    print(f"[done] S3 section written to {out}; raw results {raw_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
