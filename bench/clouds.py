#!/usr/bin/env python3
"""pytusd on GCS and Azure, each beside its own SDK's plain upload, on the tests' emulators.

    PYTHONPATH=$PWD/src:$PWD .venv/bin/python bench/clouds.py [--rounds 5] [--size 128M] [--chunk 8M]
        [--stores gcs,azure] [--out docs/benchmarks.md]

The emulators (gcp-storage-emulator from PyPI, Azurite from npm; tests/services) are what the test
suite runs against, not Google's or Microsoft's clouds: their figures say how pytusd's stores
compare with a plain SDK upload *to the same emulator*, nothing about the clouds themselves.

Per store, two contestants: the SDK's own upload of the whole file (gcloud-aio-storage's
``upload_from_filename``; azure-storage-blob's ``upload_blob`` with 4 concurrent blocks), and pytusd
with ``--gcs-bucket``/``--azure-storage``, uploaded the two tus ways of bench/s3.py: ``stream`` (one
PATCH of the whole file, curl) and ``chunked`` (8 MiB PATCHes on one connection). Every round runs
each contestant in turn, the order rotated by one each round; every object is read back (the SDK's
through the SDK, pytusd's with a GET through pytusd) and its SHA-256 compared with the source; a
mismatch stops the run. The report replaces the section between CLOUDS_BEGIN and CLOUDS_END.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from statistics import median
from typing import Any

import clients
import run
import servers
from s3 import MiB, mib, parse_size, source

sys.path.insert(0, str(servers.ROOT))
from tests.integration.azure_helpers import CONTAINER, azure_env
from tests.services.azurite import AzuriteServer
from tests.services.gcs_emulator import GCSEmulator

MB = 1e6
CLOUDS_BEGIN, CLOUDS_END = "<!-- clouds-bench:begin -->", "<!-- clouds-bench:end -->"
GCS_BUCKET = "pytusd-bench"
WORKLOADS = ("stream", "chunked")


class VerifyError(Exception):
    """What was read back differs from the source: the run stops."""


@dataclass
class Record:
    store: str
    contestant: str
    workload: str
    round: int
    mbps: float = 0.0
    emulator_cpu: float = 0.0
    server_cpu: float = 0.0
    error: str = ""


@dataclass
class Emulator:
    """One started emulator and what the harness needs of it."""

    store: str
    pid: int
    flags: list[str]
    env: dict[str, str]
    sdk_upload: Callable[[Path, str], None]
    sdk_digest: Callable[[str], str]
    stop: Callable[[], None]
    versions: dict[str, str] = field(default_factory=dict)


def _sha256(chunks: Iterator[bytes] | list[bytes]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def start_gcs() -> Emulator:
    from gcloud.aio.storage import Storage

    emulator = GCSEmulator().start()
    emulator.create_bucket(GCS_BUCKET)
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.endpoint  # the SDK finds the emulator as pytusd does

    async def upload(path: Path, name: str) -> None:
        async with Storage() as storage:
            await storage.upload_from_filename(GCS_BUCKET, name, str(path), timeout=600)

    async def digest(name: str) -> str:
        async with Storage() as storage:
            return _sha256([await storage.download(GCS_BUCKET, name, timeout=600)])

    assert emulator._proc is not None
    return Emulator(
        "gcs", emulator._proc.pid,
        ["--gcs-bucket", GCS_BUCKET, "--gcs-object-prefix", "bench/"],
        {"STORAGE_EMULATOR_HOST": emulator.endpoint},
        lambda p, n: asyncio.run(upload(p, n)), lambda n: asyncio.run(digest(n)), emulator.stop,
        {"gcp-storage-emulator": version("gcp-storage-emulator"), "gcloud-aio-storage": version("gcloud-aio-storage")},
    )  # fmt: skip


def start_azure() -> Emulator:
    from azure.storage.blob.aio import BlobServiceClient

    azurite = AzuriteServer().start()
    credential = {"account_name": azurite.account, "account_key": azurite.key}

    async def create() -> None:
        async with BlobServiceClient(azurite.endpoint, credential=credential) as service:
            await service.create_container(CONTAINER)

    async def upload(path: Path, name: str) -> None:
        async with BlobServiceClient(azurite.endpoint, credential=credential) as service:
            with open(path, "rb") as f:
                await service.get_blob_client(CONTAINER, name).upload_blob(f, overwrite=True, max_concurrency=4)

    async def digest(name: str) -> str:
        async with BlobServiceClient(azurite.endpoint, credential=credential) as service:
            stream = await service.get_blob_client(CONTAINER, name).download_blob()
            h = hashlib.sha256()
            async for chunk in stream.chunks():
                h.update(chunk)
            return h.hexdigest()

    asyncio.run(create())
    assert azurite.proc is not None
    package = Path(servers.ROOT, "tests/services/azurite/node_modules/azurite/package.json")
    return Emulator(
        "azure", azurite.proc.pid,
        ["--azure-storage", CONTAINER, "--azure-endpoint", azurite.endpoint, "--azure-object-prefix", "bench/"],
        azure_env(azurite),
        lambda p, n: asyncio.run(upload(p, n)), lambda n: asyncio.run(digest(n)), azurite.stop,
        {"azurite": json.loads(package.read_text())["version"], "azure-storage-blob": version("azure-storage-blob")},
    )  # fmt: skip


class PytusdOn(servers.Pytusd):
    """pytusd with an object store's flags and environment."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__()
        self.name = f"pytusd-{emulator.store}"
        self.emulator = emulator

    def command(self, port: int, data: Path, tmp: Path) -> list[str]:
        return [*super().command(port, data, tmp), *self.emulator.flags]

    def env(self, tmp: Path) -> dict[str, str]:
        return self.emulator.env


def pytusd_digest(target: clients.Target, path: str) -> str:
    import http.client

    conn = http.client.HTTPConnection(target.host, target.port, timeout=600)
    try:
        conn.request("GET", path, headers={"Tus-Resumable": "1.0.0"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise VerifyError(f"GET {path}: {resp.status}")
        return _sha256(iter(lambda: resp.read(MiB), b""))
    finally:
        conn.close()


@contextmanager
def cpu_of(rec: Record, emulator_pid: int, server_pid: int | None) -> Iterator[None]:
    e0 = servers.tree_cpu(emulator_pid)
    s0 = servers.tree_cpu(server_pid) if server_pid else 0.0
    yield
    rec.emulator_cpu = servers.tree_cpu(emulator_pid) - e0
    rec.server_cpu = (servers.tree_cpu(server_pid) - s0) if server_pid else 0.0


def measure_sdk(emu: Emulator, rnd: int, src: Any) -> Record:
    rec = Record(emu.store, "sdk", "whole file", rnd)
    name = f"sdk/{uuid.uuid4().hex}"
    with cpu_of(rec, emu.pid, None):
        t0 = time.perf_counter()
        emu.sdk_upload(src.path, name)
        rec.mbps = src.size / MB / (time.perf_counter() - t0)
    if emu.sdk_digest(name) != src.sha256:
        raise VerifyError(f"{emu.store} SDK upload {name} differs from the source")
    return rec


def measure_pytusd(emu: Emulator, running: servers.Running, wl: str, rnd: int, src: Any, chunk: int) -> Record:
    rec = Record(emu.store, "pytusd", wl, rnd)
    target = clients.Target("127.0.0.1", running.port)
    created: list[str] = []
    with cpu_of(rec, emu.pid, running.proc.pid):
        if wl == "stream":
            metrics, failures = clients.stream(target, src.path, src.size, created)
        else:
            metrics, failures = clients.chunked(target, src.path, src.size, chunk, created)
    if failures or not created:
        rec.error = f"{failures} failures"
        return rec
    rec.mbps = metrics["MB/s"]
    if pytusd_digest(target, created[0]) != src.sha256:
        raise VerifyError(f"pytusd on {emu.store}: {created[0]} differs from the source")
    return rec


def run_store(store: str, args: argparse.Namespace, src: Any) -> tuple[list[Record], dict[str, str]]:
    emu = start_gcs() if store == "gcs" else start_azure()
    running = servers.start(PytusdOn(emu))
    records: list[Record] = []
    try:
        warm = source(8 * MiB)
        measure_sdk(emu, 0, warm)
        for wl in WORKLOADS:
            measure_pytusd(emu, running, wl, 0, warm, args.chunk)
        jobs: list[Callable[[int], Record]] = [
            lambda r: measure_sdk(emu, r, src),
            lambda r: measure_pytusd(emu, running, "stream", r, src, args.chunk),
            lambda r: measure_pytusd(emu, running, "chunked", r, src, args.chunk),
        ]
        for rnd in range(1, args.rounds + 1):
            print(f"[{store} round {rnd}/{args.rounds}]", flush=True)
            for k in range(len(jobs)):
                run.wait_quiet(args.max_wait_idle)
                rec = jobs[(rnd - 1 + k) % len(jobs)](rnd)
                print(
                    f"  {rec.contestant:6} {rec.workload:10} {rec.mbps:7.1f} MB/s  emulator cpu {rec.emulator_cpu:.2f}s"
                    f"  pytusd cpu {rec.server_cpu:.2f}s {rec.error}",
                    flush=True,
                )
                records.append(rec)
        return records, {**emu.versions, **servers.Pytusd().versions()}
    finally:
        running.stop()
        emu.stop()


def render(records: list[Record], versions: dict[str, str], args: argparse.Namespace) -> str:
    lines = [
        CLOUDS_BEGIN,
        "## GCS and Azure on their emulators (bench/clouds.py)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {args.rounds} rounds, {mib(args.size)} per upload, "
        f"chunked in {mib(args.chunk)} PATCHes; order rotated each round; every object read back and compared. "
        "**Against the emulators the tests use (gcp-storage-emulator, Azurite), not Google's or Microsoft's clouds**: "
        "the figures compare pytusd's stores with the SDK's own upload to the same emulator on this 2-core machine, "
        "where the emulator, pytusd and the client share the cores.",
        "",
        "| store | contestant | workload | MB/s median (min-max) | of the SDK's rate | emulator CPU-s | pytusd CPU-s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for store in args.stores:
        ok = [r for r in records if r.store == store and not r.error]
        sdk = [r.mbps for r in ok if r.contestant == "sdk"]
        base = median(sdk) if sdk else None
        for contestant, wl in (("sdk", "whole file"), ("pytusd", "stream"), ("pytusd", "chunked")):
            recs = [r for r in ok if r.contestant == contestant and r.workload == wl]
            if not recs:
                continue
            rates = [r.mbps for r in recs]
            mid = median(rates)
            share = f"{mid / base:.2f}" if base else "-"
            lines.append(
                f"| {store} | {contestant} | {wl} | {mid:.1f} ({min(rates):.1f}-{max(rates):.1f}) | {share} "
                f"| {median(r.emulator_cpu for r in recs):.2f} | "
                f"{median(r.server_cpu for r in recs):.2f} |"
            )
    failed = [r for r in records if r.error]
    if failed:
        lines += ["", f"Failed measurements (left out above): {len(failed)}."]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".", CLOUDS_END, ""]
    return "\n".join(lines)


def write_section(out: Path, section: str) -> None:
    text = out.read_text() if out.exists() else ""
    begin, end = text.find(CLOUDS_BEGIN), text.find(CLOUDS_END)
    if begin >= 0 and end > begin:
        text = text[:begin] + section + text[end + len(CLOUDS_END) :].removeprefix("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    out.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=parse_size, default=128 * MiB)
    ap.add_argument("--chunk", type=parse_size, default=8 * MiB)
    ap.add_argument("--stores", default="gcs,azure")
    ap.add_argument("--max-wait-idle", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=servers.ROOT / "docs" / "benchmarks.md")
    args = ap.parse_args()
    args.stores = [s for s in args.stores.split(",") if s]
    src = source(args.size)
    records: list[Record] = []
    versions: dict[str, str] = {}
    for store in args.stores:
        recs, vers = run_store(store, args, src)
        records += recs
        versions.update(vers)
    section = render(records, versions, args)
    print(section)
    write_section(args.out, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
