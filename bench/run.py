#!/usr/bin/env python3
"""Benchmark pytusd and its peers side by side, alternating servers round by round.

    python bench/run.py [--quick] [--rounds N] [--workloads stream,chunked,...]
                        [--servers pytusd,pytusd-w2,tus-node,tuspyserver,nginx]
                        [--out docs/benchmarks.md]

See bench/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import clients
import report
import servers
from clients import Metrics, Target

MiB = 2**20
NOISE_CORES = 0.25  # other processes busier than this during a measurement: noisy
WORKLOADS = ["stream", "chunked", "small", "small-cwu", "head", "memory"]


@dataclass(frozen=True)
class Params:
    stream_size: int = 1024 * MiB
    chunked_size: int = 512 * MiB
    chunk: int = 8 * MiB
    small_n: int = 2000
    small_size: int = 64 * 1024
    small_conc: int = 16
    head_secs: float = 10.0
    head_conc: int = 16
    mem_n: int = 32
    mem_size: int = 64 * MiB


QUICK = replace(
    Params(),
    stream_size=128 * MiB,
    chunked_size=64 * MiB,
    small_n=300,
    head_secs=2.0,
    mem_size=8 * MiB,
)


@dataclass
class Record:
    round: int
    workload: str
    server: str
    metrics: Metrics = field(default_factory=dict)
    failures: int = 0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    wall: float = 0.0
    kernel_cpu: float = 0.0  # interrupts and kernel threads, partly on the server's behalf
    other_cpu: float = 0.0  # other processes on the machine meanwhile: noise
    attempts: int = 1
    error: str = ""


def source_file(size: int) -> Path:
    """size random bytes, generated once in the cache."""
    path = servers.CACHE / "data" / f"random-{size}.bin"
    if path.exists() and path.stat().st_size == size:
        # Into the page cache now: else the first stream measurement pays for reading the disk.
        with open(path, "rb") as f, open(os.devnull, "wb") as sink:
            shutil.copyfileobj(f, sink, 8 * MiB)
        return path
    print(f"[setup] writing {size / MiB:.0f} MiB of random data to {path}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        for off in range(0, size, 8 * MiB):
            f.write(os.urandom(min(8 * MiB, size - off)))
    tmp.rename(path)
    return path


def client_cpu() -> float:
    """CPU seconds of this process plus its finished children (curl, loadclient)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def busy_cpu() -> float:
    """CPU seconds spent by the whole machine (all cores) since boot."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / servers.CLK_TCK


def kernel_cpu() -> float:
    """CPU seconds of interrupts and kernel threads (writeback, journal, network)."""
    with open("/proc/stat") as f:
        ticks = sum(map(int, f.readline().split()[6:8]))  # irq softirq
    for pid in filter(str.isdigit, os.listdir("/proc")):
        st = servers.proc_stat(int(pid))
        if st and (st[1] == "2" or pid == "2"):  # children of kthreadd
            ticks += int(st[11]) + int(st[12])
    return ticks / servers.CLK_TCK


def wait_quiet(max_wait: float, limit: float = 0.25) -> float:
    """Wait (up to max_wait s) until the machine is idle: < limit cores busy over 0.5 s.

    The servers under test idle between workloads, so anything busy is someone
    else. Returns the seconds waited.
    """
    t0 = time.monotonic()
    while True:
        b0 = busy_cpu()
        time.sleep(0.5)
        if (busy_cpu() - b0) / 0.5 < limit or time.monotonic() - t0 > max_wait:
            return time.monotonic() - t0


def workload_fn(
    name: str, p: Params, t: Target, src: Path, srv: servers.Running, load_client: Path | None
) -> Callable[[], tuple[Metrics, int]]:
    """``load_client``: the compiled client for head and small (bench/loadclient.c); None: the Python ones."""
    match name:
        case "stream":
            return lambda: clients.stream(t, src, p.stream_size)
        case "chunked":
            return lambda: clients.chunked(t, src, p.chunked_size, p.chunk)
        case "small" | "small-cwu":
            cwu = name == "small-cwu"
            return lambda: clients.small_uploads(t, p.small_n, p.small_size, p.small_conc, cwu, load_client)
        case "head":
            return lambda: clients.heads(t, p.head_secs, p.head_conc, load_client)
        case "memory":
            return lambda: clients.memory(t, src, p.mem_n, p.mem_size, srv.rss)
    raise ValueError(name)


def measure(
    rnd: int, name: str, srv: servers.Running, p: Params, src: Path, max_wait: float, load_client: Path | None
) -> Record:
    rec = Record(rnd, name, srv.name)
    target = Target("127.0.0.1", srv.port, verify=not srv.spec.reference)
    fn = workload_fn(name, p, target, src, srv, load_client)
    srv.wipe()
    os.sync()
    gc.collect()
    waited = wait_quiet(max_wait)
    if waited > 1:
        print(f"  (waited {waited:.0f} s for the machine to be idle)", flush=True)
    c0, s0, b0, k0 = client_cpu(), srv.cpu(), busy_cpu(), kernel_cpu()
    t0 = time.perf_counter()
    try:
        rec.metrics, rec.failures = fn()
        if rec.failures and not any(v > 0 for v in rec.metrics.values()):
            rec.metrics, rec.error = {}, "every request failed"
    except Exception as e:  # any failure is recorded, the run goes on
        rec.failures, rec.error = rec.failures + 1, f"{type(e).__name__}: {e}"
        if not isinstance(e, (OSError, clients.HTTPError)):
            traceback.print_exc()
    rec.wall = time.perf_counter() - t0
    rec.client_cpu, rec.server_cpu = client_cpu() - c0, srv.cpu() - s0
    rec.kernel_cpu = kernel_cpu() - k0
    rec.other_cpu = max(0.0, busy_cpu() - b0 - rec.client_cpu - rec.server_cpu - rec.kernel_cpu)
    srv.wipe()
    return rec


def warm_up(srv: servers.Running, src: Path, load_client: Path | None) -> None:
    """Unmeasured traffic first, so JITs and caches are warm in round 1 too."""
    t = Target("127.0.0.1", srv.port, verify=not srv.spec.reference)
    try:
        clients.chunked(t, src, 32 * MiB, 8 * MiB)
        for cwu in (False, True):
            clients.small_uploads(t, 300, 64 * 1024, 16, cwu, load_client)
        clients.heads(t, 1.0, 16, load_client)
    except (OSError, clients.HTTPError) as e:
        print(f"  warm-up of {srv.name} failed: {e!r}", flush=True)
    srv.wipe()


def describe(rec: Record) -> str:
    vals = ", ".join(f"{v:.1f} {k}" for k, v in rec.metrics.items())
    cores = rec.client_cpu / rec.wall if rec.wall else 0
    extra = f" FAILURES={rec.failures} {rec.error}" if rec.failures else ""
    return (
        f"  r{rec.round} {rec.workload:9} {rec.server:11} {vals or '-'}"
        f" | cpu server {rec.server_cpu:.2f}s client {rec.client_cpu:.2f}s"
        f" ({cores:.2f} cores) kernel {rec.kernel_cpu:.2f}s other {rec.other_cpu:.2f}s{extra}"
    )


def measure_quietest(
    rnd: int,
    wl: str,
    srv: servers.Running,
    p: Params,
    src: Path,
    args: argparse.Namespace,
    load_client: Path | None,
) -> Record:
    """measure(), repeated while other processes made it noisy; keeps the quietest try."""
    tries: list[Record] = []
    while len(tries) <= args.retries:
        tries.append(measure(rnd, wl, srv, p, src, args.max_wait_idle, load_client))
        print(describe(tries[-1]), flush=True)
        if tries[-1].other_cpu <= NOISE_CORES * tries[-1].wall:
            break
        if len(tries) <= args.retries:
            print("  noisy (other processes were busy): measuring again", flush=True)
    rec = min(tries, key=lambda r: r.other_cpu / (r.wall or 1))
    rec.attempts = len(tries)
    return rec


def run_rounds(
    running: list[servers.Running],
    workloads: list[str],
    p: Params,
    src: Path,
    args: argparse.Namespace,
    load_client: Path | None,
) -> list[Record]:
    """Every round: every workload on every server in turn, the order rotated by one each round."""
    records: list[Record] = []
    for rnd in range(1, args.rounds + 1):
        print(f"[round {rnd}/{args.rounds}]", flush=True)
        # Each round starts with the next server (A B C, B C A, C A B, ...): whoever goes first after a
        # workload switch follows the largest deletions and page-cache churn, so nobody always does.
        order = [(rnd - 1 + k) % len(running) for k in range(len(running))]
        for wl in workloads:
            for i in order:
                srv = running[i]
                if srv.spec.workloads is not None and wl not in srv.spec.workloads:
                    continue
                if not srv.alive:
                    print(f"  {srv.name} died; restarting. Log tail:\n{srv.log_tail()}", flush=True)
                    srv.stop()
                    srv = running[i] = servers.start(srv.spec)
                    srv.notes.append(f"died, restarted in round {rnd} before {wl}")
                records.append(measure_quietest(rnd, wl, srv, p, src, args, load_client))
    return records


#: A line in a report after which the text is written by hand (analysis, profiles): kept on rewrite.
KEEP_MARKER = "<!-- Written by hand from here on; bench/run.py keeps it when it rewrites the tables above. -->"


def hand_written_part(out: Path) -> str:
    """The hand-written end of an existing report (from KEEP_MARKER on), to append to a new one."""
    try:
        old = out.read_text()
    except FileNotFoundError:
        return ""
    at = old.find(KEEP_MARKER)
    return "" if at < 0 else "\n" + old[at:]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, 1 round (smoke test)")
    ap.add_argument("--rounds", type=int, help="rounds (default 3, 1 with --quick)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--servers", default=",".join(servers.SPECS))
    ap.add_argument("--out", help="report path (default docs/benchmarks.md; with --quick bench/.cache/quick.md)")
    ap.add_argument(
        "--max-wait-idle",
        type=float,
        default=60.0,
        metavar="S",
        help="before each measurement wait up to S seconds for other load to stop",
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help=f"repeat a measurement up to N times while other processes used more than {NOISE_CORES} cores during it",
    )
    args = ap.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    # A smoke test must not replace the recorded report.
    args.out = args.out or str(servers.CACHE / "quick.md" if args.quick else servers.ROOT / "docs" / "benchmarks.md")
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    unknown += [s for s in args.servers if s not in servers.SPECS]
    if unknown:
        ap.error(f"unknown workload/server {', '.join(unknown)}")
    return args


def main() -> int:
    args = parse_args()
    params = QUICK if args.quick else Params()
    command = shlex.join(["python", "bench/run.py", *sys.argv[1:]])
    started = datetime.now(UTC)
    src = source_file(params.stream_size)
    load_client = clients.build_load_client(servers.CACHE)
    if load_client is None:
        print("[setup] no C compiler: head and small use the slower Python clients", flush=True)
    running: list[servers.Running] = []
    skipped: dict[str, str] = {}
    try:
        for name in args.servers:
            try:
                running.append(servers.start(servers.SPECS[name]))
            except servers.Unavailable as e:
                skipped[name] = str(e)
                print(f"[skip] {name}: {e}", flush=True)
                continue
            print(f"[start] {name} on port {running[-1].port}, warming up", flush=True)
            warm_up(running[-1], src, load_client)
        versions = report.versions([s.spec for s in running])  # what is running, not what is on disk later
        records = run_rounds(running, args.workloads, params, src, args, load_client)
    finally:
        for srv in running:
            srv.stop()

    raw = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "rounds": args.rounds,
        "params": asdict(params),
        "quick": args.quick,
        "noise_cores": NOISE_CORES,
        **report.machine_info(),
        "versions": versions,
        "skipped": skipped,
        "notes": {s.name: s.notes for s in running if s.notes},
        "records": [asdict(r) for r in records],
    }
    results = servers.CACHE / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{started:%Y%m%dT%H%M%S}.json").write_text(json.dumps(raw, indent=1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.render(raw, args.workloads, args.servers) + hand_written_part(out))
    print(f"[done] report written to {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
