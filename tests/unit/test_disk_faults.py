"""A full disk and other OS errors under the file store (issue 14): 507 on every path, nothing left
half-made, every offset reported backed by bytes on disk; names the file system cannot hold are 404.
ENOSPC is injected by patching ``os`` (a real full file system needs root).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pytusd.faults import RETRY_AFTER
from pytusd.info import UploadInfo
from pytusd.stores.base import UploadExists, UploadNotFound
from pytusd.stores.file import TEMP_DIR, FileStore
from tests.support.faults import enospc, file_server
from tests.support.inprocess import ListBody, SelfWritingBody, header, path_of

SMALL = b"0123456789" * 100
OCTET = "application/offset+octet-stream"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


def one_line(body: object) -> str:
    assert isinstance(body, bytes)
    text = body.decode()
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text.strip()


# -- a full disk under the file store ---------------------------------------------------------------


@pytest.mark.parametrize("body_type", [ListBody, SelfWritingBody])
def test_a_disk_that_fills_during_a_patch_is_507_and_the_offset_is_what_is_on_disk(
    tmp_path: Path, disk_room: list[int], body_type: type[ListBody]
) -> None:
    async def scenario() -> None:
        srv = await file_server(tmp_path)
        path = await srv.create(len(SMALL))
        disk_room[0] = 333
        body = body_type(SMALL[:500], SMALL[500:])
        response = await srv.patch(path, b"", 0, body=body, content_length=str(len(SMALL)))
        assert response.status == 507 and one_line(response.body) == "insufficient storage"
        assert header(response, "upload-offset") == "333"
        head = await srv.call("HEAD", path)
        assert header(head, "upload-offset") == "333"
        assert (tmp_path / path.rsplit("/", 1)[1]).read_bytes() == SMALL[:333]  # the offset is backed

        disk_room[0] = -1
        assert (await srv.patch(path, SMALL[333:], 333)).status == 204
        assert (tmp_path / path.rsplit("/", 1)[1]).read_bytes() == SMALL

    run(scenario)


def test_a_creation_with_upload_on_a_full_disk_tells_where_to_resume(tmp_path: Path, disk_room: list[int]) -> None:
    async def scenario() -> None:
        srv = await file_server(tmp_path)
        disk_room[0] = 500 + 200  # the info file, then some of the body
        response = await srv.call(
            "POST", "/files/", ListBody(SMALL), upload_length=str(len(SMALL)), content_length=str(len(SMALL)),
            content_type=OCTET,
        )  # fmt: skip
        assert response.status == 507
        offset = int(header(response, "upload-offset") or "-1")
        path = path_of(response)
        assert 0 <= offset < len(SMALL)
        assert header(await srv.call("HEAD", path), "upload-offset") == str(offset)
        disk_room[0] = -1
        assert (await srv.patch(path, SMALL[offset:], offset)).status == 204

    run(scenario)


def test_a_checksummed_chunk_that_does_not_fit_is_not_appended_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        srv = await file_server(tmp_path)
        path = await srv.create(len(SMALL))
        real_copy = os.copy_file_range

        def copy(src: int, dst: int, count: int, offset_src: int | None = None, offset_dst: int | None = None) -> int:
            if count <= 100:
                raise enospc()
            return real_copy(src, dst, 100, offset_src, offset_dst)  # a part fits, then the disk is full

        sha1 = base64.b64encode(hashlib.sha1(SMALL).digest()).decode()
        with monkeypatch.context() as patch:
            patch.setattr(os, "copy_file_range", copy)
            patch.setattr(os, "pwrite", lambda *args: (_ for _ in ()).throw(enospc()))
            response = await srv.patch(path, SMALL, 0, upload_checksum=f"sha1 {sha1}")
        assert response.status == 507
        assert header(await srv.call("HEAD", path), "upload-offset") == "0"
        assert (tmp_path / path.rsplit("/", 1)[1]).read_bytes() == b""
        assert os.listdir(tmp_path / TEMP_DIR) == []

    run(scenario)


def test_a_full_disk_during_an_info_update_is_507_and_keeps_the_old_info(tmp_path: Path, disk_room: list[int]) -> None:
    async def scenario() -> None:
        srv = await file_server(tmp_path)
        path = await srv.create(None)
        disk_room[0] = 10  # the new info file does not fit
        response = await srv.patch(path, b"", 0, upload_length="5")
        assert response.status == 507
        disk_room[0] = -1
        assert os.listdir(tmp_path / TEMP_DIR) == []  # no half-written info file is left
        head = await srv.call("HEAD", path)
        assert head.status == 200 and header(head, "upload-defer-length") == "1"

    run(scenario)


def test_a_final_upload_that_does_not_fit_is_not_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        srv = await file_server(tmp_path)
        partials = []
        for part in (SMALL, SMALL):
            partial = await srv.create(len(part), upload_concat="partial")
            assert (await srv.patch(partial, part, 0)).status == 204
            partials.append(partial)
        before = sorted([key async for key in srv.store.list_uploads()])

        def full(*args: Any, **kwargs: Any) -> int:
            raise enospc()

        with monkeypatch.context() as patch:
            patch.setattr(os, "copy_file_range", full)
            patch.setattr(os, "pwrite", full)
            response = await srv.call("POST", "/files/", upload_concat="final;" + " ".join(partials))
        assert response.status == 507
        assert sorted([key async for key in srv.store.list_uploads()]) == before
        assert os.listdir(tmp_path / TEMP_DIR) == []

    run(scenario)


def test_a_final_waiting_for_its_partials_is_never_complete_while_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        srv = await file_server(tmp_path)
        partial = await srv.create(len(SMALL), upload_concat="partial")
        created = await srv.call("POST", "/files/", upload_concat=f"final;{partial}")
        assert created.status == 201
        final = path_of(created)

        def full(*args: Any, **kwargs: Any) -> int:
            raise enospc()

        with monkeypatch.context() as patch:
            patch.setattr(os, "copy_file_range", full)
            patch.setattr(os, "pwrite", full)
            # The partial's own bytes are stored: its PATCH succeeds although the final cannot be made.
            patched = await srv.patch(partial, SMALL, 0)
            assert patched.status == 204 and header(patched, "upload-offset") == str(len(SMALL))
            head = await srv.call("HEAD", final)
            assert head.status == 507
        assert os.listdir(tmp_path / TEMP_DIR) == []
        head = await srv.call("HEAD", final)
        assert head.status == 200 and header(head, "upload-offset") == str(len(SMALL))
        assert (tmp_path / final.rsplit("/", 1)[1]).read_bytes() == SMALL

    run(scenario)


# -- every OS error answered ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE", "GET"])
def test_an_id_too_long_for_a_file_name_is_404(tmp_path: Path, method: str) -> None:
    async def scenario() -> None:
        srv = await file_server(tmp_path)
        for upload_id in ("a" * 252, "x/" + "b" * 250):
            body = ListBody(b"x") if method == "PATCH" else None
            extra = {"upload_offset": "0", "content_type": OCTET, "content_length": "1"} if method == "PATCH" else {}
            response = await srv.call(method, f"/files/{upload_id}", body, **extra)
            assert response.status == 404, (upload_id, response.status, response.body)

    run(scenario)


def test_out_of_file_descriptors_is_503_with_retry_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        srv = await file_server(tmp_path)
        path = await srv.create(3)

        def exhausted(*args: Any, **kwargs: Any) -> int:
            raise OSError(errno.EMFILE, "Too many open files")

        with monkeypatch.context() as patch:
            patch.setattr(os, "open", exhausted)
            response = await srv.patch(path, b"abc", 0)
        assert response.status == 503 and header(response, "retry-after") == RETRY_AFTER
        assert (await srv.patch(path, b"abc", 0)).status == 204

    run(scenario)


def test_the_file_store_refuses_names_the_file_system_cannot_hold(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = FileStore(tmp_path)
        await store.start()
        for upload_id in ("a" * 252, "x/" + "b" * 250):
            with pytest.raises(UploadNotFound):
                await store.get_info(upload_id)
            with pytest.raises(UploadNotFound):
                await store.create(UploadInfo(id=upload_id, size=1))
        assert (await store.create(UploadInfo(id="a" * 200, size=1))).id == "a" * 200

    run(scenario)


def test_a_hook_chosen_id_nested_in_another_upload_cannot_be_used(tmp_path: Path) -> None:
    """IDs ``a`` and ``a/b`` cannot both be files: the second creation is refused as taken (409),
    not a stray OSError, and leaves nothing."""

    async def scenario() -> None:
        store = FileStore(tmp_path)
        await store.start()
        await store.create(UploadInfo(id="a", size=1))
        await store.create(UploadInfo(id="b/c", size=1))
        for upload_id in ("a/x", "a/x/y", "b", "b/c/d"):
            with pytest.raises(UploadExists):
                await store.create(UploadInfo(id=upload_id, size=1))
        assert sorted([u async for u in store.list_uploads()]) == ["a", "b/c"]

    run(scenario)
