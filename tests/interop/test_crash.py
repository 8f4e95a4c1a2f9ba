"""Crash test: SIGKILL the server in the middle of several uploads, restart it, resume them all.

Four slow clients upload concurrently: two raw streaming clients (httpx; one with Content-Length,
one with chunked transfer encoding, so the kill lands in the middle of request bodies), tuspy,
and tus-js-client (a Node process; replaced by a third raw client when Node is not installed);
on S3 a fifth sends 6 MiB PATCHes, each one part whose commit names it while it uploads. Once
every client has had some bytes acknowledged (on S3, and one upload more than its first 5 MiB
part, so that committed parts are left behind as well as incomplete parts) the server is killed
(SIGKILL: nothing is saved on the way out) and then restarted on the same port and upload
directory. Checked:

* no offset the server acknowledged before the kill is beyond what is stored (on disk, in the
  GCS bucket: the data object and the chunks continuing it, in the Azure container: the committed
  blob, or in the S3 bucket: the committed parts and the incomplete part, the parts read through
  the test Swift's own API since S3's cannot read an unfinished multipart upload back), and what
  is stored is exactly a prefix of the file (no garbage from the bodies cut by the kill);
* after the restart HEAD reports exactly what is stored, and every client resumes from there
  (HEAD, then PATCH from the reported offset) to a byte-exact upload.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from tusclient import client as tus_client

from tests.interop.conftest import DRIVER, NODE_DIR, run_tusjs
from tests.interop.helpers import KIB, MIB, TUS, assert_stored, upload_id, write_random_file
from tests.support.server import ServerProcess, current_backend
from tests.support.wait import wait_until

OCTET = "application/offset+octet-stream"


@dataclass
class Tracked:
    """One upload and what the server acknowledged for it."""

    name: str
    kind: str  # "httpx", "httpx-chunked", "httpx-parts", "tuspy", "tusjs"
    path: Path
    data: bytes
    url: str | None = None
    acked: list[int] = field(default_factory=list)
    finished: bool = False
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_acked(self) -> int:
        return max(self.acked, default=0)


# -- slow clients -----------------------------------------------------------------------------


def _slow_body(data: bytes, start: int, end: int, piece: int, delay: float) -> Iterator[bytes]:
    for position in range(start, end, piece):
        yield data[position : min(position + piece, end)]
        time.sleep(delay)


def _httpx_upload(server: ServerProcess, upload: Tracked, *, chunked: bool, chunk: int = 2 * MIB) -> None:
    try:
        with httpx.Client(headers=TUS, timeout=30.0) as client:
            created = client.post(server.url, headers={"Upload-Length": str(len(upload.data))})
            assert created.status_code == 201, created.text
            upload.url = urljoin(server.url, created.headers["location"])
            offset = 0
            while offset < len(upload.data):
                end = min(offset + chunk, len(upload.data))
                headers = {"Upload-Offset": str(offset), "Content-Type": OCTET}
                if not chunked:
                    headers["Content-Length"] = str(end - offset)
                body = _slow_body(upload.data, offset, end, 64 * KIB, 0.01)
                response = client.patch(upload.url, headers=headers, content=body)
                assert response.status_code == 204, f"{response.status_code} {response.text}"
                offset = int(response.headers["upload-offset"])
                upload.acked.append(offset)
            upload.finished = True
    except Exception as exc:  # the kill cuts the connection: expected
        upload.error = repr(exc)


def _tuspy_upload(server: ServerProcess, upload: Tracked, chunk: int = 512 * KIB, delay: float = 0.1) -> None:
    try:
        uploader = tus_client.TusClient(server.url).uploader(str(upload.path), chunk_size=chunk)
        upload.url = uploader.create_url()
        uploader.set_url(upload.url)
        while uploader.offset < len(upload.data):
            uploader.upload_chunk()
            upload.acked.append(uploader.offset)
            time.sleep(delay)
        upload.finished = True
    except Exception as exc:
        upload.error = repr(exc)


class _TusJsRun:
    """tus-js-client in a Node process, reporting acknowledged offsets on stderr as they come."""

    def __init__(self, node: str, server: ServerProcess, upload: Tracked, storage: Path) -> None:
        self.upload = upload
        self.storage = storage
        config = {
            "endpoint": server.url, "file": str(upload.path), "chunkSize": 512 * KIB,
            "urlStorage": str(storage), "options": {"storeFingerprintForResuming": True},
            "requestDelayMs": 150, "reportProgress": True, "timeoutMs": 60000,
        }  # fmt: skip
        self.proc = subprocess.Popen(
            [node, str(DRIVER), json.dumps(config)],
            cwd=NODE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.stderr: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "ack":
                if self.upload.url is None and event.get("url"):
                    self.upload.url = event["url"]
                self.upload.acked.append(int(event["offset"]))

    def join(self, timeout: float) -> None:
        self.proc.wait(timeout)
        self.reader.join(timeout)
        assert self.proc.stdout is not None
        lines = [line for line in self.proc.stdout.read().splitlines() if line.startswith("{")]
        result = json.loads(lines[-1]) if lines else {"ok": False, "error": "no result", "stderr": self.stderr}
        self.upload.extra["result"] = result
        self.upload.finished = bool(result.get("ok"))
        if not result.get("ok"):
            self.upload.error = json.dumps(result.get("error"))
        if result.get("url"):
            self.upload.url = result["url"]


def _node_or_none(request: pytest.FixtureRequest) -> str | None:
    try:
        return str(request.getfixturevalue("node_deps"))
    except pytest.skip.Exception:
        return None


# -- resuming ---------------------------------------------------------------------------------


def _resume_httpx(server: ServerProcess, upload: Tracked, chunk: int = 4 * MIB) -> int:
    assert upload.url is not None
    with httpx.Client(headers=TUS, timeout=30.0) as client:
        probe = client.head(upload.url)
        assert probe.status_code == 200, probe.text
        offset = resumed_from = int(probe.headers["upload-offset"])
        while offset < len(upload.data):
            end = min(offset + chunk, len(upload.data))
            response = client.patch(
                upload.url, headers={"Upload-Offset": str(offset), "Content-Type": OCTET},
                content=upload.data[offset:end],
            )  # fmt: skip
            assert response.status_code == 204, f"{response.status_code} {response.text}"
            assert int(response.headers["upload-offset"]) == end
            offset = end
    return resumed_from


def _resume_tuspy(server: ServerProcess, upload: Tracked) -> int:
    uploader = tus_client.TusClient(server.url).uploader(str(upload.path), url=upload.url, chunk_size=MIB)
    resumed_from = int(uploader.offset)  # from its HEAD
    uploader.upload()
    assert uploader.offset == len(upload.data)
    return resumed_from


def _stored(server: ServerProcess, uid: str) -> tuple[bytes, dict[str, Any]]:
    """The bytes and the ``.info`` a killed server left of upload ``uid``, read from its storage."""
    if server.backend == "azure":
        from tests.integration.azure_helpers import stored_upload

        return stored_upload(server.args, uid)
    if server.backend == "gcs":
        from tests.integration.gcs_helpers import stored_upload as stored_in_gcs

        return stored_in_gcs(server.args, uid)
    if server.backend == "s3":
        from tests.integration.s3_helpers import stored_upload as stored_in_s3

        return stored_in_s3(server.args, uid)
    path = server.upload_dir / uid
    return path.read_bytes(), json.loads(Path(f"{path}.info").read_text())


# -- the test ---------------------------------------------------------------------------------


@pytest.mark.parametrize("hashes", [True, False], ids=["content-hashes", "no-content-hashes"])
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_mid_upload_then_resume(
    server_factory: Callable[..., ServerProcess],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    workers: int,
    hashes: bool,
) -> None:
    if not hashes and current_backend() != "s3":
        pytest.skip("--s3-disable-content-hashes is an S3 flag")
    # Without content hashes a pending part is told by its size alone: named only where S3 lists
    # nothing above the counted parts.
    server = server_factory(["--workers", str(workers), *([] if hashes else ["--s3-disable-content-hashes"])])
    node = _node_or_none(request)

    files = tmp_path / "files"
    files.mkdir()
    plan = [("A", "httpx", 16 * MIB), ("B", "httpx-chunked", 20 * MIB), ("C", "tuspy", 12 * MIB),
            ("D", "tusjs" if node else "httpx", 10 * MIB)]  # fmt: skip
    if server.backend == "s3":
        # PATCHes of one part each: their commits name the part while it uploads (a pending
        # part), so what the kill leaves of this upload is counted through that rule.
        plan.append(("E", "httpx-parts", 24 * MIB))
    uploads = []
    for seed, (name, kind, size) in enumerate(plan, start=100 + 10 * workers):
        path, data = write_random_file(files, size, seed=seed, name=f"{name}.bin")
        uploads.append(Tracked(name, kind, path, data))

    # tus-js-client first (a Node process starts slowest), the others once it is under way, so
    # that all are in the middle of their uploads when the server dies.
    threads: list[threading.Thread] = []
    js_run: _TusJsRun | None = None
    storage = tmp_path / "tusjs-urls.json"
    for upload in uploads:
        if upload.kind == "tusjs":
            assert node is not None
            js_run = _TusJsRun(node, server, upload, storage)
            wait_until(
                lambda u=upload: u.max_acked > 0 or u.error is not None, timeout=20.0, interval=0.02, server=server,
                message="tus-js-client to get bytes acknowledged (or fail)",
            )  # fmt: skip
    for upload in uploads:
        if upload.kind == "tuspy":
            target: Callable[[], None] = partial(_tuspy_upload, server, upload)
        elif upload.kind == "httpx":
            target = partial(_httpx_upload, server, upload, chunked=False, chunk=1 * MIB)
        elif upload.kind == "httpx-parts":
            target = partial(_httpx_upload, server, upload, chunked=False, chunk=6 * MIB)
        elif upload.kind == "httpx-chunked":
            target = partial(_httpx_upload, server, upload, chunked=True, chunk=2 * MIB)
        else:
            continue
        thread = threading.Thread(target=target, name=upload.name, daemon=True)
        thread.start()
        threads.append(thread)

    # Kill once every upload has had bytes acknowledged, while all of them are still going.
    def all_acked() -> bool:
        failed = [u for u in uploads if u.error]
        assert not failed, f"uploads failed before the kill: {[(u.name, u.error) for u in failed]}"
        return all(u.max_acked > 0 for u in uploads)

    wait_until(
        all_acked, timeout=20.0, interval=0.02, server=server,
        message=lambda: f"every upload to have bytes acknowledged: {[(u.name, u.acked) for u in uploads]}",
    )  # fmt: skip
    if server.backend == "s3":
        # On S3 an upload's first part (5 MiB) stays in its incomplete part until it is full:
        # wait until one upload has parts committed, so that the kill leaves those behind too.
        wait_until(
            lambda: any(u.max_acked > 6 * MIB for u in uploads), timeout=20.0, interval=0.02, server=server,
            message=lambda: f"an upload to get beyond its first S3 part: {[(u.name, u.acked) for u in uploads]}",
        )  # fmt: skip
    time.sleep(0.15)  # into the middle of the next request bodies
    server.kill()
    killed_at = time.monotonic()

    for thread in threads:
        thread.join(30.0)
        assert not thread.is_alive(), f"client {thread.name} hangs after the server was killed"
    if js_run is not None:
        js_run.join(30.0)
    assert time.monotonic() - killed_at < 30.0

    # What a dead server left behind: at least every acknowledged byte, and only the file's bytes.
    for upload in uploads:
        assert upload.url is not None, f"{upload.name} was never created: {upload.error}"
    held = {u.name: _stored(server, upload_id(server, str(u.url))) for u in uploads}
    stored = {name: len(data) for name, (data, _) in held.items()}
    summary = {u.name: {"kind": u.kind, "acked": u.max_acked, "stored": stored[u.name], "size": len(u.data),
                        "error": u.error} for u in uploads}  # fmt: skip
    for upload in uploads:
        assert not upload.finished, f"{upload.name} finished before the kill (make it bigger or slower): {summary}"
        size = stored[upload.name]
        assert size >= upload.max_acked, (
            f"{upload.name} ({upload.kind}): the server acknowledged offset {upload.max_acked} "
            f"but only {size} bytes are stored after the kill: {summary}"
        )
        assert size <= len(upload.data)
        assert held[upload.name][0] == upload.data[:size], (
            f"{upload.name}: the stored bytes are not a prefix of the file: {summary}"
        )
        assert held[upload.name][1]["Size"] == len(upload.data)

    server.start()

    # After the restart HEAD reports exactly what is stored; every client resumes from there.
    for upload in uploads:
        assert upload.url is not None
        probe = httpx.head(upload.url, headers=TUS, timeout=10.0)
        assert probe.status_code == 200, probe.text
        assert int(probe.headers["upload-offset"]) == stored[upload.name]
        assert int(probe.headers["upload-length"]) == len(upload.data)

    def resume(upload: Tracked) -> None:
        if upload.kind == "tuspy":
            resumed_from = _resume_tuspy(server, upload)
        elif upload.kind == "tusjs":
            assert node is not None
            result = run_tusjs(node, {
                "endpoint": server.url, "file": str(upload.path), "chunkSize": 2 * MIB, "action": "resume",
                "urlStorage": str(storage), "options": {"storeFingerprintForResuming": True},
            })  # fmt: skip
            assert result["ok"], f"tus-js-client could not resume: {result['error']}"
            assert result["url"] == upload.url
            resumed_from = result["resumedFrom"]
        else:
            resumed_from = _resume_httpx(server, upload)
        upload.extra["resumed_from"] = resumed_from

    errors: list[str] = []

    def resume_collecting(upload: Tracked) -> None:
        try:
            resume(upload)
        except BaseException as exc:
            errors.append(f"resuming {upload.name} ({upload.kind}) failed: {exc!r}")

    resumers = [threading.Thread(target=resume_collecting, args=(u,), name=f"resume-{u.name}") for u in uploads]
    for thread in resumers:
        thread.start()
    for thread in resumers:
        thread.join(90.0)
    assert not errors, "\n".join(errors)

    for upload in uploads:
        assert upload.extra["resumed_from"] == stored[upload.name] >= upload.max_acked > 0
        assert upload.url is not None
        assert_stored(server, upload.url, upload.data)
