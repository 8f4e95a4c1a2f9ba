"""pytusd on S3 over HTTP: real ``pytusd --s3-bucket ...`` processes on a real Swift, killed and
restarted, with credentials from the AWS environment variables only.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from tests.integration.s3_helpers import (
    MiB,
    S3ServerProcess,
    bucket_keys,
    multipart_uploads,
    parts_in_s3,
    s3_flags,
    s3_server_factory_fixture,  # noqa: F401 - fixture
    swift_fixture,  # noqa: F401 - fixture
    unique_prefix,
)
from tests.services.swift import SwiftS3Server
from tests.support.rawhttp import Connection
from tests.support.wait import wait_until
from tusclient import client as tus_client

pytestmark = pytest.mark.services
#: S3 only (see tests/conftest.py): these tests start their own stores and servers on Swift.
STORES = ("s3",)

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = "application/offset+octet-stream"


@pytest.fixture(scope="module")
def shared(swift: SwiftS3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3ServerProcess, str]]:
    """One server for the tests that need nothing special; each test still has its own uploads."""
    prefix = unique_prefix()
    server = S3ServerProcess(swift, s3_flags(swift, prefix), tmp_path_factory.mktemp("s3srv")).start()
    yield server, prefix
    server.kill()


def client_for(server: S3ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=TUS, timeout=60.0)


def create(c: httpx.Client, length: int | None, headers: dict[str, str] | None = None) -> str:
    hdrs = {"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"}
    response = c.post("/files/", headers={**hdrs, **(headers or {})})
    assert response.status_code == 201, response.text
    return response.headers["location"]


def patch(c: httpx.Client, url: str, data: bytes | Any, offset: int, **headers: str) -> httpx.Response:
    return c.patch(url, content=data, headers={"Upload-Offset": str(offset), "Content-Type": OCTET, **headers})


def offset_of(c: httpx.Client, url: str) -> int:
    response = c.head(url)
    assert response.status_code == 200, response.status_code
    return int(response.headers["upload-offset"])


def download(c: httpx.Client, url: str) -> bytes:
    response = c.get(url)
    assert response.status_code == 200, response.text
    return response.content


def stall_and_kill(
    server: S3ServerProcess,
    c: httpx.Client,
    url: str,
    data: bytes,
    start: int,
    end: int,
    *,
    headers: dict[str, str],
    until_offset: int,
) -> None:
    """PATCH ``data[start:end]`` and then nothing more; SIGKILL the server once HEAD (on the same
    server, while the PATCH is still open) reports ``until_offset``."""
    stalled, release = threading.Event(), threading.Event()

    def body() -> Iterator[bytes]:
        for position in range(start, end, 256 * 1024):
            yield data[position : min(position + 256 * 1024, end)]
        stalled.set()
        release.wait(30)  # the server dies while waiting for the rest
        yield b"x"

    def send() -> None:
        with pytest.raises(httpx.HTTPError):
            patch(c, url, body(), start, **headers)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    assert stalled.wait(30)
    with client_for(server) as observer:
        wait_until(lambda: offset_of(observer, url) == until_offset, timeout=15, message=f"offset {until_offset}")
        time.sleep(0.5)  # and not a byte more arrives
        assert offset_of(observer, url) == until_offset
    server.kill()
    release.set()
    sender.join(10)
    assert not sender.is_alive()


def test_kill_mid_upload_and_resume_on_a_fresh_server(swift: SwiftS3Server, s3_server_factory: Any) -> None:
    """SIGKILL during PATCHes: each next server (a new process with empty memory) reports, from
    S3 alone, exactly what was committed: every byte of a plain PATCH that reached the server,
    nothing of a checksum PATCH, every acknowledged byte; and the upload then finishes byte-exact."""
    prefix = unique_prefix()
    args = s3_flags(swift, prefix)
    data = os.urandom(24 * MiB + 99)
    checksum = "sha1 " + base64.b64encode(hashlib.sha1(data[3 * MiB :]).digest()).decode()

    server = s3_server_factory(args)
    with client_for(server) as c:
        url = httpx.URL(create(c, len(data))).path
        assert patch(c, url, data[: 3 * MiB], 0).status_code == 204  # acknowledged: in S3
        # A checksum PATCH counts only as a whole: killed after 11 MiB, nothing of it counts...
        stall_and_kill(server, c, url, data, 3 * MiB, 14 * MiB, headers={"Upload-Checksum": checksum},
                       until_offset=3 * MiB)  # fmt: skip
    assert len(parts_in_s3(swift, prefix + url.rsplit("/", 1)[-1])) >= 2  # ...although two of its parts were in S3

    server = s3_server_factory(args)
    with client_for(server) as c:
        assert offset_of(c, url) == 3 * MiB
        # A plain PATCH keeps what reached the server, as a disk would: 3 + 9 MiB make two parts
        # and 2 MiB that wait for the next one, committed once the body paused.
        stall_and_kill(server, c, url, data, 3 * MiB, 12 * MiB, headers={}, until_offset=12 * MiB)

    server = s3_server_factory(args)
    with client_for(server) as c:
        assert offset_of(c, url) == 12 * MiB
        assert patch(c, url, data[12 * MiB : 13 * MiB], 12 * MiB).status_code == 204
        server.kill()  # right after the answer

    server = s3_server_factory(args)
    with client_for(server) as c:
        assert offset_of(c, url) == 13 * MiB
        response = patch(c, url, data[13 * MiB :], 13 * MiB)
        assert response.status_code == 204
        assert int(response.headers["upload-offset"]) == len(data)
        assert download(c, url) == data


def test_twenty_concurrent_uploads(shared: tuple[S3ServerProcess, str]) -> None:
    server, _ = shared
    # Every fourth crosses the 5 MiB part size; the others live in incomplete parts until done.
    sizes = [5 * MiB + 1000 * n if n % 4 == 3 else 150 * 1024 * (n + 1) + n for n in range(20)]
    rng = [(n, os.urandom(size)) for n, size in enumerate(sizes)]

    def one(item: tuple[int, bytes]) -> tuple[str, bytes]:
        n, data = item
        chunk = (n % 3 + 1) * 1024 * 1024
        with client_for(server) as c:
            url = create(
                c, len(data), {"Upload-Metadata": "filename " + base64.b64encode(f"{n}.bin".encode()).decode()}
            )
            position = 0
            while position < len(data):
                response = patch(c, url, data[position : position + chunk], position)
                assert response.status_code == 204, response.text
                position = int(response.headers["upload-offset"])
            return url, data

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, rng))
    with client_for(server) as c:
        for url, data in results:
            assert hashlib.sha256(download(c, url)).digest() == hashlib.sha256(data).digest()


def test_small_chunks_then_large_ones_with_tuspy(shared: tuple[S3ServerProcess, str], tmp_path: Path) -> None:
    server, _ = shared
    data = os.urandom(13 * MiB + 5)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    uploader = tus_client.TusClient(server.url).uploader(str(path), chunk_size=1 * MiB)
    for _ in range(3):  # 3 chunks of 1 MiB: only the incomplete part
        uploader.upload_chunk()
    uploader.chunk_size = 7 * MiB  # then larger chunks
    uploader.upload()
    assert uploader.url is not None
    with client_for(server) as c:
        assert download(c, uploader.url) == data


def test_checksum_mismatch_discards_a_multi_part_chunk(shared: tuple[S3ServerProcess, str]) -> None:
    server, _ = shared
    data = os.urandom(12 * MiB)
    wrong = base64.b64encode(hashlib.sha1(b"not the data").digest()).decode()
    right = base64.b64encode(hashlib.sha1(data[1 * MiB :]).digest()).decode()
    with client_for(server) as c:
        url = create(c, len(data))
        assert patch(c, url, data[: 1 * MiB], 0).status_code == 204
        response = patch(c, url, data[1 * MiB :], 1 * MiB, **{"Upload-Checksum": f"sha1 {wrong}"})
        assert response.status_code == 460
        assert offset_of(c, url) == 1 * MiB
        response = patch(c, url, data[1 * MiB :], 1 * MiB, **{"Upload-Checksum": f"sha1 {right}"})
        assert response.status_code == 204
        assert download(c, url) == data


def test_concatenation_of_three_partials(shared: tuple[S3ServerProcess, str]) -> None:
    server, _ = shared
    pieces = [os.urandom(5 * MiB + 17), os.urandom(6 * MiB), os.urandom(333)]
    with client_for(server) as c:
        urls = []
        for piece in pieces:
            url = create(c, len(piece), {"Upload-Concat": "partial"})
            assert patch(c, url, piece, 0).status_code == 204
            urls.append(httpx.URL(url).path)
        response = c.post("/files/", headers={"Upload-Concat": "final;" + " ".join(urls)})
        assert response.status_code == 201
        final = response.headers["location"]
        assert offset_of(c, final) == sum(map(len, pieces))
        assert download(c, final) == b"".join(pieces)


def test_concatenation_unfinished(shared: tuple[S3ServerProcess, str]) -> None:
    server, _ = shared
    pieces = [os.urandom(2 * MiB), os.urandom(7 * MiB)]
    with client_for(server) as c:
        urls = [create(c, len(p), {"Upload-Concat": "partial"}) for p in pieces]
        response = c.post("/files/", headers={"Upload-Concat": "final;" + " ".join(httpx.URL(u).path for u in urls)})
        assert response.status_code == 201
        final = response.headers["location"]
        for url, piece in zip(urls, pieces, strict=True):
            assert patch(c, url, piece, 0).status_code == 204
        assert download(c, final) == b"".join(pieces)


def test_zero_byte_upload_and_ranges(shared: tuple[S3ServerProcess, str]) -> None:
    server, _ = shared
    with client_for(server) as c:
        url = create(c, 0)
        assert offset_of(c, url) == 0
        response = c.get(url)
        assert response.status_code == 200 and response.content == b""
        data = os.urandom(6 * MiB)
        url = create(c, len(data))
        assert patch(c, url, data, 0).status_code == 204
        response = c.get(url, headers={"Range": "bytes=5242870-5242889"})
        assert response.status_code == 206
        assert response.content == data[5242870:5242890]


def test_deferred_length(shared: tuple[S3ServerProcess, str]) -> None:
    server, _ = shared
    data = os.urandom(6 * MiB + 1)
    with client_for(server) as c:
        url = create(c, None)
        assert patch(c, url, data[: 4 * MiB], 0).status_code == 204
        response = patch(c, url, data[4 * MiB :], 4 * MiB, **{"Upload-Length": str(len(data))})
        assert response.status_code == 204
        assert download(c, url) == data


def test_termination_leaves_nothing(swift: SwiftS3Server, shared: tuple[S3ServerProcess, str]) -> None:
    server, prefix = shared
    with client_for(server) as c:
        url = create(c, 10 * MiB)
        assert patch(c, url, os.urandom(7 * MiB), 0).status_code == 204
        upload_key = prefix + httpx.URL(url).path.rsplit("/", 1)[-1]
        assert upload_key in multipart_uploads(swift, prefix)
        assert c.delete(url).status_code == 204
        assert c.head(url).status_code == 404
    assert not [k for k in bucket_keys(swift, prefix) if k.startswith(upload_key)]
    assert upload_key not in multipart_uploads(swift, prefix)


def test_wrong_credentials_refuse_to_start(swift: SwiftS3Server, s3_server_factory: Any) -> None:
    server = s3_server_factory(s3_flags(swift, unique_prefix()), secret="wrong", wait=False)
    with pytest.raises(RuntimeError, match="exited"):
        server.start(timeout=30)


def test_a_known_length_patch_cut_short_keeps_what_arrived_and_no_spool_stays(
    swift: SwiftS3Server, s3_server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PATCH announcing 20 MiB streams its parts to S3 while they arrive; the client leaves
    after 12 MiB: the two whole parts and the 2 MiB of the part that was streaming count (that
    part is taken back and its bytes kept), the upload resumes there byte-exact, and no spool
    file stays behind, neither then nor after the server stops."""
    spool_root = tmp_path / "spool"
    spool_root.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool_root))  # the server inherits it: its spool dir goes there
    server = s3_server_factory(s3_flags(swift, unique_prefix()))
    data = os.urandom(24 * MiB)

    def spool_files() -> list[str]:
        return [f.name for f in spool_root.rglob("*") if f.is_file()]

    with client_for(server) as c:
        url = httpx.URL(create(c, len(data))).path
        with Connection(SimpleNamespace(host="127.0.0.1", port=server.port)) as raw:
            headers = [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"),
                       ("Content-Type", "application/offset+octet-stream")]  # fmt: skip
            raw.send_head("PATCH", url, headers, content_length=20 * MiB)
            for position in range(0, 12 * MiB, 256 * 1024):
                raw.send_body(data[position : position + 256 * 1024])
            # Both whole parts are committed while the body still arrives.
            wait_until(lambda: offset_of(c, url) == 10 * MiB, timeout=15, message="two parts committed")
        wait_until(lambda: offset_of(c, url) == 12 * MiB, timeout=15, message="the cut part's 2 MiB kept")
        assert len(spool_files()) <= 1  # at most the cached incomplete part
        response = patch(c, url, data[12 * MiB :], 12 * MiB)
        assert response.status_code == 204 and int(response.headers["upload-offset"]) == len(data)
        assert download(c, url) == data
        assert spool_files() == []
    server.stop()
    assert list(spool_root.iterdir()) == []  # the spool directory itself is gone too
