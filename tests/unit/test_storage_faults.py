"""Storage faults answered right (issue 14): a full disk is 507 and leaves nothing half-made, a store
that is down is 503 with Retry-After and loses no acknowledged byte, an OS error caused by a
request's own input (an over-long ID) is a 4xx. Faults are injected (ENOSPC by patching ``os``,
S3 outages on FakeS3): a real full file system needs root.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pytusd.faults import RETRY_AFTER, errno_answer, storage_failure
from pytusd.messages import Response
from pytusd.stores.base import StoreError, StoreUnavailable
from pytusd.stores.memory import MemoryStore
from pytusd.stores.s3 import S3Store
from pytusd.stores.s3.client import S3Error, S3Unavailable
from pytusd.stores.s3.parts import MIN_PART_SIZE
from tests.support.fake_s3 import FakeS3
from tests.support.faults import enospc, file_server
from tests.support.inprocess import ListBody, Server, header, path_of

MiB = 1024 * 1024
DATA = bytes(range(256)) * (12 * MiB // 256)
SMALL = b"0123456789" * 100
OCTET = "application/offset+octet-stream"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


def retry_after(response: Response) -> str | None:
    return header(response, "retry-after")


def one_line(response: Response) -> str:
    assert isinstance(response.body, bytes)
    text = response.body.decode()
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text.strip()


# -- the mapping ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (errno.ENOSPC, 507),
        (errno.EDQUOT, 507),
        (errno.EMFILE, 503),
        (errno.ENFILE, 503),
        (errno.ENAMETOOLONG, 404),
        (errno.ENOTDIR, 404),
        (errno.EISDIR, 404),
        (errno.ENOENT, 404),
        (errno.EACCES, 500),
        (errno.EPERM, 500),
        (errno.EROFS, 500),
        (errno.EIO, 500),
        (None, 500),
    ],
)
def test_each_os_error_has_its_status(code: int | None, status: int) -> None:
    assert errno_answer(code)[0] == status
    error = storage_failure(OSError(code, "x") if code is not None else OSError("no errno"))
    assert error.status == status
    assert (("retry-after", RETRY_AFTER) in error.headers) == (status == 503)
    assert "\n" not in error.reason


def test_a_store_that_is_down_is_503_with_retry_after_and_other_store_errors_500() -> None:
    down = storage_failure(S3Unavailable("put_object", "SlowDown", 503, "slow down"))
    assert (down.status, down.headers) == (503, [("retry-after", RETRY_AFTER)])
    assert storage_failure(StoreUnavailable("gone")).status == 503
    assert storage_failure(S3Error("put_object", "AccessDenied", 403, "")).status == 500
    assert storage_failure(StoreError("odd")).status == 500


def test_permission_errors_are_500_and_logged_as_misconfiguration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        srv = await file_server(tmp_path)
        path = await srv.create(3)

        def denied(*args: Any, **kwargs: Any) -> int:
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(os, "open", denied)
        with caplog.at_level(logging.ERROR, logger="pytusd"):
            response = await srv.patch(path, b"abc", 0)
        assert response.status == 500 and one_line(response) == "storage error"
        assert any("may not use its storage" in r.getMessage() for r in caplog.records)

    run(scenario)


# -- the S3 client tells an outage from a mistake --------------------------------------------------


def _client_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


def _botocore_errors() -> list[tuple[str, Callable[[], Exception], bool]]:
    import aiohttp
    import botocore.exceptions as bx

    url = "http://127.0.0.1:9"
    return [
        ("connection refused", lambda: bx.EndpointConnectionError(endpoint_url=url), True),
        ("connect timeout", lambda: bx.ConnectTimeoutError(endpoint_url=url), True),
        ("read timeout", lambda: bx.ReadTimeoutError(endpoint_url=url), True),
        ("connection closed", lambda: bx.ConnectionClosedError(endpoint_url=url), True),
        ("server gone", lambda: bx.HTTPClientError(error=aiohttp.ServerDisconnectedError()), True),
        ("our own bug", lambda: bx.HTTPClientError(error=ValueError("bad body")), False),
        ("certificate", lambda: bx.SSLError(endpoint_url=url, error="bad cert"), False),
        ("SlowDown", lambda: _client_error("SlowDown", 503), True),
        ("ServiceUnavailable", lambda: _client_error("ServiceUnavailable", 503), True),
        ("InternalError", lambda: _client_error("InternalError", 500), True),
        ("bad gateway", lambda: _client_error("502", 502), True),
        ("NoSuchKey", lambda: _client_error("NoSuchKey", 404), False),
        ("AccessDenied", lambda: _client_error("AccessDenied", 403), False),
        ("BadDigest", lambda: _client_error("BadDigest", 400), False),
    ]


@pytest.mark.parametrize("case", range(14))
def test_the_s3_client_raises_store_unavailable_for_outages_only(case: int) -> None:
    from pytusd.stores.s3.aws import _wrap

    name, make, unavailable = _botocore_errors()[case]
    error = _wrap("put_object", make())
    assert isinstance(error, S3Error)
    assert isinstance(error, StoreUnavailable) == unavailable, name


# -- S3 down, through the whole service ------------------------------------------------------------


async def s3_server(fake: FakeS3, tmp_path: Path) -> tuple[Server, S3Store]:
    store = S3Store("bucket", client=fake, part_size=MIN_PART_SIZE, max_concurrent_parts=4, temp_dir=str(tmp_path))
    await store.start()
    return Server(store), store


async def s3_content(store: S3Store, path: str) -> bytes:
    return b"".join([block async for block in store.read(path.rsplit("/", 1)[1])])


def test_s3_unreachable_mid_patch_is_503_keeps_what_was_acknowledged_and_resumes(tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeS3()
        srv, store = await s3_server(fake, tmp_path)
        try:
            path = await srv.create(len(DATA))
            first = await srv.patch(path, DATA[: 6 * MiB], 0)
            assert first.status == 204 and header(first, "upload-offset") == str(6 * MiB)

            # The rest goes up as one part; S3 cannot be reached for it (after the client's retries).
            fake.fail("upload_part", unreachable=True)
            failed = await srv.patch(path, DATA[6 * MiB :], 6 * MiB)
            assert failed.status == 503 and retry_after(failed) == RETRY_AFTER, failed.body
            assert one_line(failed) == "storage is unavailable, retry shortly"
            assert header(failed, "upload-offset") == str(6 * MiB)  # what was acknowledged stays

            # Down altogether: every request is 503, none 500 or hanging.
            fake.down = True
            for response in [
                await srv.call("HEAD", path),
                await srv.patch(path, DATA[6 * MiB :], 6 * MiB),
                await srv.call("POST", "/files/", upload_length="5"),
                await srv.call("DELETE", path),
            ]:
                assert response.status == 503 and retry_after(response) == RETRY_AFTER, response.body
            assert os.listdir(store._temp_dir) == [] or all(
                not name.endswith(".spool") or name in _cached(store) for name in os.listdir(store._temp_dir)
            )

            # Back: the lock was let go, the upload resumes where the server said.
            fake.down = False
            head = await srv.call("HEAD", path)
            assert head.status == 200 and header(head, "upload-offset") == str(6 * MiB)
            done = await srv.patch(path, DATA[6 * MiB :], 6 * MiB)
            assert done.status == 204 and header(done, "upload-offset") == str(len(DATA))
            assert await s3_content(store, path) == DATA
            assert os.listdir(store._temp_dir) == []  # no spool file of the failed requests is left
        finally:
            await store.close()

    run(scenario)


def _cached(store: S3Store) -> set[str]:
    return {os.path.basename(entry.path) for entry in store._io.cache._entries.values()}


def test_s3_down_before_a_creation_with_upload_leaves_nothing_behind(tmp_path: Path) -> None:
    async def scenario() -> None:
        fake = FakeS3()
        srv, store = await s3_server(fake, tmp_path)
        try:
            fake.down = True
            response = await srv.call(
                "POST", "/files/", ListBody(SMALL), upload_length=str(len(SMALL)), content_length=str(len(SMALL)),
                content_type=OCTET,
            )  # fmt: skip
            assert response.status == 503 and retry_after(response) == RETRY_AFTER
            fake.down = False
            assert [key async for key in store.list_uploads()] == []
        finally:
            await store.close()

    run(scenario)


def test_a_full_spool_disk_is_507_and_leaves_no_spool_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        fake = FakeS3()
        srv, store = await s3_server(fake, tmp_path)
        try:
            path = await srv.create(len(DATA))
            assert (await srv.patch(path, DATA[:MiB], 0)).status == 204
            real_pwrite = os.pwrite
            room = [2 * MiB]

            def pwrite(fd: int, data: Any, offset: int) -> int:
                if room[0] <= 0:
                    raise enospc()
                written = real_pwrite(fd, bytes(memoryview(data)[: room[0]]), offset)
                room[0] -= written
                return written

            with monkeypatch.context() as patch:
                patch.setattr(os, "pwrite", pwrite)
                response = await srv.patch(path, DATA[MiB:], MiB)
            assert response.status == 507 and one_line(response) == "insufficient storage"
            assert header(response, "upload-offset") == str(MiB)
            assert [n for n in os.listdir(store._temp_dir) if n not in _cached(store)] == []
            assert (await srv.patch(path, DATA[MiB:], MiB)).status == 204
            assert await s3_content(store, path) == DATA
        finally:
            await store.close()

    run(scenario)


def test_repr_digest_of_an_upload_on_a_store_that_is_down_is_503() -> None:
    class DownForReading(MemoryStore):
        def read(self, upload_id: str, start: int = 0, end: int | None = None) -> Any:
            raise StoreUnavailable("S3 is down")

    async def scenario() -> None:
        srv = Server(DownForReading())
        draft: dict[str, Any] = {"tus": False, "upload_draft_interop_version": "8"}
        created = await srv.call(
            "POST", "/files/", ListBody(b"ab"), upload_complete="?0", content_length="2", **draft
        )  # fmt: skip
        path = path_of(created)
        digest = base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
        response = await srv.call(
            "PATCH", path, ListBody(b"c"), upload_offset="2", upload_complete="?1", repr_digest=f"sha-256=:{digest}:",
            content_type="application/partial-upload", content_length="1", **draft,
        )  # fmt: skip
        assert response.status == 503 and retry_after(response) == RETRY_AFTER

    run(scenario)
