"""Markdown report from the raw results of bench/run.py."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from statistics import median
from typing import Any

from servers import Spec

MiB = 2**20
CLIENT_CORES_LIMIT = 0.7

# workload -> (primary metric, higher is better, extra metrics)
METRICS: dict[str, tuple[str, bool, list[str]]] = {
    "stream": ("MB/s", True, []),
    "chunked": ("MB/s", True, []),
    "small": ("uploads/s", True, ["p50 ms", "p99 ms"]),
    "small-cwu": ("uploads/s", True, ["p50 ms", "p99 ms"]),
    "head": ("req/s", True, ["p50 ms", "p99 ms"]),
    "memory": ("peak MiB", False, ["idle MiB"]),
}


def describe(workload: str, p: dict[str, Any]) -> str:
    def mib(n: int) -> str:
        return f"{n / MiB:g} MiB" if n < 1024 * MiB else f"{n / 1024 / MiB:g} GiB"

    return {
        "stream": f"POST, then one PATCH of {mib(p['stream_size'])} sent by curl (`-T`); "
        "MB/s = bytes / curl's `time_total` of the PATCH; HEAD must then report the full offset.",
        "chunked": f"POST, then {mib(p['chunked_size'])} in {mib(p['chunk'])} PATCHes on one "
        "keep-alive connection (blocking socket, `sendfile`); MB/s over the PATCHes.",
        "small": f"{p['small_n']} uploads of {p['small_size'] // 1024} KiB, {p['small_conc']} at a "
        "time on keep-alive connections, each a POST then a PATCH; latency is per upload.",
        "small-cwu": "as small, but each upload is a single POST with the body (creation-with-upload).",
        "head": f"HEAD on one upload from {p['head_conc']} keep-alive connections for "
        f"{p['head_secs']:g} s; one request in flight per connection.",
        "memory": f"RSS summed over the server's process tree, sampled every 50 ms while "
        f"{p['mem_n']} uploads of {mib(p['mem_size'])} are PATCHed at once; idle = just before.",
    }[workload]


def _out(cmd: list[str]) -> str:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (res.stdout or res.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "n/a"


def machine_info() -> dict[str, Any]:
    def grep(path: str, key: str) -> str:
        with open(path) as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith(key)), "?")

    mem_kib = int(grep("/proc/meminfo", "MemTotal").split()[0])
    return {
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": grep("/proc/cpuinfo", "model name"),
            "memory": f"{mem_kib / 2**20:.1f} GiB",
            "kernel": f"{platform.system()} {platform.release()}",
        },
    }


def versions(specs: list[Spec]) -> dict[str, str]:
    v = {"python (harness, client)": platform.python_version()}
    v["curl"] = _out(["curl", "--version"]).split(" (")[0].removeprefix("curl ")
    for spec in specs:
        v.update(spec.versions())
    try:
        v["uvloop (client)"] = version("uvloop")
    except PackageNotFoundError:
        v["uvloop (client)"] = "not installed (plain asyncio)"
    return v


def _fmt(x: float) -> str:
    if x != x:  # NaN
        return "—"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


#: The Redis-lock and nginx variants (bench/servers.py: PytusdRedis, PytusdNginx) and the goal they serve.
LOCK_SERVERS = ("pytusd-redis", "pytusd-nginx1", "pytusd-nginx3")
REDIS_GOAL = 0.80  # Redis locks may cost at most 20 % of pytusd's small uploads/s on one instance


def _median_of(recs: list[dict[str, Any]], wl: str, srv: str) -> float | None:
    key = METRICS[wl][0]
    vals = [r["metrics"][key] for r in recs if r["workload"] == wl and r["server"] == srv and key in r["metrics"]]
    return median(vals) if vals else None


def locks_and_proxy(raw: dict[str, Any], workloads: list[str], servers: list[str]) -> list[str]:
    """Redis locks against file locks, one instance against three behind nginx: ratios of the medians."""
    recs = raw["records"]
    ran = {(r["workload"], r["server"]) for r in recs}
    wls = [wl for wl in workloads if any((wl, s) in ran for s in LOCK_SERVERS if s in servers)]
    if not wls:
        return []

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}" if a is not None and b else "—"

    out = [
        "## Redis locks and nginx",
        "",
        "Medians from the tables above, and their ratios. pytusd-redis is pytusd with its locks in Redis; "
        "pytusd-nginx1 is one pytusd (file locks) behind nginx; pytusd-nginx3 is three behind nginx, "
        "on one upload dir, with locks in Redis. "
        f"Goal: Redis locks cost at most {1 - REDIS_GOAL:.0%} of small uploads/s on one instance "
        f"(pytusd-redis / pytusd ≥ {REDIS_GOAL:.2f} in `small`).",
        "",
        "| workload | pytusd | pytusd-redis | redis / file locks | pytusd-nginx1 | nginx1 / pytusd "
        "| pytusd-nginx3 | nginx3 / nginx1 |",
        "|---" * 8 + "|",
    ]
    for wl in wls:
        base, redis, n1, n3 = (_median_of(recs, wl, s) for s in ("pytusd", *LOCK_SERVERS))
        cells = [
            *(_fmt(v) if v is not None else "—" for v in (base, redis)),
            ratio(redis, base),
            _fmt(n1) if n1 is not None else "—",
            ratio(n1, base),
            _fmt(n3) if n3 is not None else "—",
            ratio(n3, n1),
        ]
        out.append(f"| {wl} ({METRICS[wl][0]}) | " + " | ".join(cells) + " |")
    base, redis = _median_of(recs, "small", "pytusd"), _median_of(recs, "small", "pytusd-redis")
    if base and redis is not None:
        r = redis / base
        verdict = "meets" if r >= REDIS_GOAL else "misses"
        cost = f"Redis locks cost {1 - r:.0%} of uploads/s" if r < 1 else "no cost measured"
        out += [
            "",
            f"small: pytusd-redis / pytusd = {r:.2f}, {cost}: this run {verdict} the goal"
            + (" (quick mode: not a measurement)." if raw["quick"] else " (medians; see min and max above)."),
        ]
    return [*out, ""]


def lock_server_notes(raw: dict[str, Any], servers: list[str]) -> list[str]:
    """What the Redis and nginx variants are, for "How to read this" (only those that ran)."""
    ran = {r["server"] for r in raw["records"]} & set(servers)
    notes = []
    if "pytusd-redis" in ran:
        notes.append(
            "- pytusd-redis: `pytusd` (one process, file store) with `--redis-url` pointing at a private "
            "redis-server the harness started (no persistence); its server CPU includes Redis's. A tus HEAD takes "
            "no lock, so head shows no Redis cost by design; a small upload takes one lock (its PATCH), a "
            "small-cwu upload one (its POST)."
        )
    if ran & {"pytusd-nginx1", "pytusd-nginx3"}:
        notes.append(
            "- pytusd-nginx1 / pytusd-nginx3: nginx (1 worker, round robin, no request or response buffering, "
            "HTTP/1.1 keep-alive to the upstreams: the tests' config, tests/services/nginx.py, without its access "
            "log) in front of one pytusd with file locks, or three pytusd processes sharing one upload dir with "
            "locks in a private Redis; all with `--behind-proxy`. Server CPU covers nginx, the instances, a small "
            "launcher and (nginx3) Redis."
        )
    if "pytusd-nginx3" in ran:
        notes.append(
            f"- pytusd-nginx3 runs three instances, nginx and Redis on the same {raw['machine']['nproc']} cores as "
            "one instance (shared with the client): against pytusd-nginx1 it shows the overhead of Redis locks "
            "and of spreading the work over processes, not scale-out."
        )
    return notes


def render(raw: dict[str, Any], workloads: list[str], servers: list[str]) -> str:
    recs = raw["records"]
    noise = raw["noise_cores"]
    m = raw["machine"]
    out = [
        "# Benchmarks: pytusd and its peers",
        "",
        f"Generated {raw['started'].replace('T', ' ').replace('+00:00', ' UTC')} by `{raw['command']}` "
        f"({raw['rounds']} round{'s' * (raw['rounds'] != 1)}; in each round every workload "
        "runs on every server in turn, the order rotated by one each round: A B C, B C A, …"
        + (", **quick mode: reduced sizes, smoke test only**" if raw["quick"] else "")
        + ").",
        "",
        f"Machine: {m['cpu']}, {m['nproc']} cores (nproc), {m['memory']} RAM, {m['kernel']}. "
        "Client and server share these cores.",
        "",
        "Versions: " + "; ".join(f"{k} {v}" for k, v in raw["versions"].items()) + ".",
        "",
    ]
    notes: list[str] = []
    for name, why in raw["skipped"].items():
        notes.append(f"**{name} skipped**: {why.splitlines()[0]}")
    if repeated := sum(r.get("attempts", 1) > 1 for r in recs):
        notes.append(
            f"{repeated} of {len(recs)} measurements were repeated because other "
            "processes were busy; the quietest attempt is reported."
        )
    for name, ns in raw["notes"].items():
        notes += [f"{name}: {n}" for n in ns]

    for wl in workloads:
        key, higher, extras = METRICS[wl]
        out += [f"## {wl}", "", describe(wl, raw["params"]), ""]
        base = [
            r["metrics"][key] for r in recs if r["workload"] == wl and r["server"] == "pytusd" and key in r["metrics"]
        ]
        base_med = median(base) if base else None
        cols = [
            f"{key} median",
            "min",
            "max",
            "vs pytusd",
            *[f"{e} (median)" for e in extras],
            "server CPU s",
            "client CPU s",
            "client cores",
            "kernel CPU s",
            "other cores",
            "failures",
        ]
        out += ["| server | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for srv in servers:
            rows = [r for r in recs if r["workload"] == wl and r["server"] == srv]
            if not rows:
                continue
            vals = [r["metrics"][key] for r in rows if key in r["metrics"]]
            fails = sum(r["failures"] for r in rows)
            cores = median(r["client_cpu"] / r["wall"] for r in rows if r["wall"])
            other = median(r["other_cpu"] / r["wall"] for r in rows if r["wall"])
            cells = [_fmt(median(vals)), _fmt(min(vals)), _fmt(max(vals))] if vals else ["—"] * 3
            cells.append(f"{median(vals) / base_med:.2f}" if vals and base_med else "—")
            for e in extras:
                ev = [r["metrics"][e] for r in rows if e in r["metrics"]]
                cells.append(_fmt(median(ev)) if ev else "—")
            cells += [
                _fmt(median(r["server_cpu"] for r in rows)),
                _fmt(median(r["client_cpu"] for r in rows)),
                f"{cores:.2f}" + (" ⚠" if cores > CLIENT_CORES_LIMIT else ""),
                _fmt(median(r.get("kernel_cpu", 0.0) for r in rows)),
                f"{other:.2f}" + (" ⚠" if other > noise else ""),
                str(fails) if fails else "0",
            ]
            label = f"{srv} (reference)" if srv == "nginx" else srv
            out.append(f"| {label} | " + " | ".join(cells) + " |")
            if cores > CLIENT_CORES_LIMIT:
                notes.append(
                    f"{wl}/{srv}: the client used {cores:.2f} cores (> "
                    f"{CLIENT_CORES_LIMIT}); the result may be client-bound."
                )
            if other > noise:
                notes.append(
                    f"{wl}/{srv}: other processes used {other:.2f} cores during the "
                    "measurement (median over rounds): noisy, compare with care."
                )
            errors = sorted({r["error"] for r in rows if r["error"]})
            notes += [f"{wl}/{srv}: {e}" for e in errors[:3]]
        out += ["", "Lower is better." if not higher else "Higher is better.", ""]

    out += locks_and_proxy(raw, workloads, servers)
    out += [
        "## How to read this",
        "",
        "- Median, min and max are over the rounds; `vs pytusd` is the median divided by "
        "pytusd's median (pytusd = 1.00; for memory, > 1 means more memory than pytusd).",
        "- MB/s is 10^6 bytes per second. Latencies are per upload (small) or per request (head).",
        "- server CPU s: user+system CPU seconds of the server's process tree during the workload "
        "(/proc/<pid>/stat); client CPU s: the harness process plus its client programs (curl, loadclient). "
        "client cores = client "
        f"CPU s / wall time; ⚠ marks more than {CLIENT_CORES_LIMIT} core, i.e. the client may "
        "have been the bottleneck on this 2-core machine.",
        "- kernel CPU s: interrupts, softirqs (loopback networking) and kernel threads (writeback, "
        "ext4 journal after fsync) — partly work done for the server that its own counters miss. "
        "other cores: the rest of the machine's busy time (/proc/stat) per second of wall time, "
        "i.e. other processes competing for the cores; a measurement where it exceeded "
        f"{raw['noise_cores']} was repeated (up to `--retries` times) and ⚠ marks a median above it.",
        "- nginx is a reference for the machine's limit, not a tus server: it writes each request "
        "body to a file and answers fixed tus-looking headers (POST 201 + Location, PATCH 204, "
        "HEAD 200) without tus logic; its offsets are not verified and its HEAD never touches "
        "disk, so head and small are upper bounds rather than like-for-like.",
        "- Memory is RSS summed over processes; pages shared by forked workers count once per process.",
        *lock_server_notes(raw, servers),
    ]
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"
