"""The dispatcher and both front ends without a socket: Request in, Response out, a store behind."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from pytusd.stores.file import FileStore
from tests.support.inprocess import ListBody, SelfWritingBody, Server, header, path_of

SHA1_HELLO = base64.b64encode(hashlib.sha1(b"hello").digest()).decode()
DRAFT = {"tus": False, "upload_draft_interop_version": "8"}


def run(scenario: Callable[[Server], Awaitable[None]], srv: Server | None = None) -> None:
    async def main() -> None:
        await scenario(srv or Server())

    asyncio.run(asyncio.wait_for(main(), 20))


def file_server(tmp_path: Path) -> Server:
    store = FileStore(tmp_path)
    asyncio.run(store.start())
    return Server(store)


# -- tus ----------------------------------------------------------------------------------------


def test_create_patch_head() -> None:
    async def scenario(srv: Server) -> None:
        created = await srv.call("POST", "/files/", upload_length="11")
        assert created.status == 201
        path = path_of(created)
        patched = await srv.call(
            "PATCH", path, ListBody(b"hello ", b"world"),
            upload_offset="0", content_type="application/offset+octet-stream", content_length="11",
        )  # fmt: skip
        assert patched.status == 204 and header(patched, "upload-offset") == "11"
        head = await srv.call("HEAD", path)
        assert header(head, "upload-offset") == "11" and header(head, "upload-length") == "11"

    run(scenario)


def test_offset_mismatch_is_409_and_changes_nothing() -> None:
    async def scenario(srv: Server) -> None:
        path = await srv.create(4)
        response = await srv.patch(path, b"ab", 2)
        assert response.status == 409 and header(response, "upload-offset") == "0"
        assert header(response, "content-type") == "text/plain; charset=utf-8"  # tus: never a problem document
        assert header(await srv.call("HEAD", path), "upload-offset") == "0"

    run(scenario)


def test_wrong_version_is_412_with_tus_version() -> None:
    async def scenario(srv: Server) -> None:
        response = await srv.call("POST", "/files/", tus_resumable="0.2.2", upload_length="1")
        assert response.status == 412 and header(response, "tus-version") == "1.0.0"

    run(scenario)


def test_checksum_mismatch_discards_the_chunk() -> None:
    async def scenario(srv: Server) -> None:
        path = await srv.create(5)
        response = await srv.patch(path, b"hello", 0, upload_checksum="sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        assert response.status == 460
        assert header(await srv.call("HEAD", path), "upload-offset") == "0"

    run(scenario)


def test_max_size() -> None:
    async def scenario(srv: Server) -> None:
        assert (await srv.call("POST", "/files/", upload_length="11")).status == 413
        assert header(await srv.call("OPTIONS", "/files/"), "tus-max-size") == "10"

    run(scenario, Server(max_size=10))


# -- the IETF draft, in process ------------------------------------------------------------------


def test_draft_creation_that_completes_the_upload() -> None:
    async def scenario(srv: Server) -> None:
        created = await srv.call(
            "POST", "/files/", ListBody(b"hello"), upload_complete="?1", content_length="5", **DRAFT
        )  # type: ignore[arg-type]
        assert created.status == 201
        assert [(k, v) for k, v in created.headers if k.startswith("upload-")] == [
            ("upload-offset", "5"), ("upload-complete", "?1"), ("upload-length", "5"), ("upload-limit", "min-size=0"),
        ]  # fmt: skip
        assert header(created, "tus-resumable") is None

    run(scenario)


def test_draft_offset_mismatch_is_a_problem_document() -> None:
    async def scenario(srv: Server) -> None:
        created = await srv.call("POST", "/files/", ListBody(b"abc"), upload_complete="?0", content_length="3", **DRAFT)  # type: ignore[arg-type]
        response = await srv.call(
            "PATCH", path_of(created), ListBody(b"x"), upload_offset="1", upload_complete="?0",
            content_type="application/partial-upload", content_length="1", **DRAFT,  # type: ignore[arg-type]
        )  # fmt: skip
        assert response.status == 409
        assert header(response, "content-type") == "application/problem+json"
        assert (header(response, "upload-offset"), header(response, "upload-complete")) == ("3", "?0")
        document = json.loads(response.body)  # type: ignore[arg-type]
        assert document == {
            "type": "https://iana.org/assignments/http-problem-types#mismatching-upload-offset",
            "title": "Upload-Offset does not match the upload's offset",
            "expected-offset": 3,
            "provided-offset": 1,
        }

    run(scenario)


def test_draft_append_to_a_complete_upload() -> None:
    async def scenario(srv: Server) -> None:
        created = await srv.call("POST", "/files/", ListBody(b"ab"), upload_complete="?1", content_length="2", **DRAFT)  # type: ignore[arg-type]
        path = path_of(created)
        more = await srv.call(
            "PATCH", path, ListBody(b"c"), upload_offset="2", upload_complete="?0",
            content_type="application/partial-upload", content_length="1", **DRAFT,  # type: ignore[arg-type]
        )  # fmt: skip
        assert more.status == 400 and json.loads(more.body)["type"].endswith("#inconsistent-upload-length")  # type: ignore[arg-type]
        again = await srv.call(
            "PATCH", path, upload_offset="2", upload_complete="?1", content_type="application/partial-upload",
            content_length="0", **DRAFT,  # type: ignore[arg-type]
        )  # fmt: skip
        assert again.status == 204 and header(again, "upload-complete") == "?1"

    run(scenario)


@pytest.mark.parametrize(("version", "completes"), [(6, True), (7, False)])
def test_draft_reaching_the_announced_length(version: int, completes: bool) -> None:
    """Up to version 6 reaching Upload-Length completes an upload; from 7 only Upload-Complete does."""

    async def scenario(srv: Server) -> None:
        draft = {"tus": False, "upload_draft_interop_version": str(version)}
        created = await srv.call("POST", "/files/", ListBody(b"abc"), upload_complete="?0", upload_length="3",
                                 content_length="3", **draft)  # type: ignore[arg-type]  # fmt: skip
        assert created.status == 201
        assert header(created, "upload-complete") == ("?1" if completes else "?0")
        assert header(created, "upload-length") == "3"

    run(scenario)


def test_draft_version_3_speaks_upload_incomplete() -> None:
    async def scenario(srv: Server) -> None:
        draft = {"tus": False, "upload_draft_interop_version": "3"}
        missing = await srv.call("POST", "/files/", **draft)  # type: ignore[arg-type]
        assert (missing.status, missing.body) == (400, b"missing or invalid Upload-Incomplete header\n")
        created = await srv.call(
            "POST", "/files/", ListBody(b"ab"), upload_incomplete="?1", content_length="2", **draft
        )  # type: ignore[arg-type]
        assert created.status == 201 and header(created, "upload-incomplete") == "?1"

    run(scenario)


def test_draft_append_needs_partial_upload_media_type_from_version_6() -> None:
    async def scenario(srv: Server) -> None:
        created = await srv.call("POST", "/files/", upload_complete="?0", **DRAFT)  # type: ignore[arg-type]
        response = await srv.call(
            "PATCH", path_of(created), ListBody(b"a"), upload_offset="0", upload_complete="?0",
            content_type="application/offset+octet-stream", content_length="1", **DRAFT,  # type: ignore[arg-type]
        )  # fmt: skip
        assert (response.status, response.body) == (415, b"Content-Type must be application/partial-upload\n")

    run(scenario)


# -- bodies that can write themselves into a file (pytusd.splice) -----------------------------------


def test_body_writes_itself_into_the_file_when_nothing_needs_its_bytes(tmp_path: Path) -> None:
    srv = file_server(tmp_path)

    async def scenario(srv: Server) -> None:
        path = await srv.create(11)
        body = SelfWritingBody(b"hello ", b"world")
        response = await srv.call("PATCH", path, body, upload_offset="0", content_length="11",
                                  content_type="application/offset+octet-stream")  # fmt: skip
        assert response.status == 204 and body.wrote_itself
        assert header(await srv.call("HEAD", path), "upload-offset") == "11"
        assert isinstance(srv.store, FileStore)
        with open(srv.store.data_path(path.rsplit("/", 1)[1]), "rb") as f:
            assert f.read() == b"hello world"

    run(scenario, srv)


@pytest.mark.parametrize(
    ("digest", "status", "offset"), [(SHA1_HELLO, 204, "5"), ("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", 460, "0")]
)
def test_checksummed_body_is_read_and_verified_never_written_directly(
    tmp_path: Path, digest: str, status: int, offset: str
) -> None:
    async def scenario(srv: Server) -> None:
        path = await srv.create(5)
        body = SelfWritingBody(b"hello")
        response = await srv.patch(path, b"", 0, upload_checksum=f"sha1 {digest}", body=body, content_length="5")
        assert response.status == status and not body.wrote_itself
        assert header(await srv.call("HEAD", path), "upload-offset") == offset

    run(scenario, file_server(tmp_path))


def test_body_of_unknown_length_is_read_and_cut_at_the_upload_size(tmp_path: Path) -> None:
    async def scenario(srv: Server) -> None:
        path = await srv.create(4)
        body = SelfWritingBody(b"ab", b"cdef")
        response = await srv.call(
            "PATCH", path, body, upload_offset="0", content_type="application/offset+octet-stream"
        )
        assert response.status == 413 and not body.wrote_itself
        assert header(await srv.call("HEAD", path), "upload-offset") == "4"

    run(scenario, file_server(tmp_path))


def test_store_without_files_reads_a_self_writing_body() -> None:
    async def scenario(srv: Server) -> None:
        path = await srv.create(5)
        body = SelfWritingBody(b"hel", b"lo")
        response = await srv.call("PATCH", path, body, upload_offset="0", content_length="5",
                                  content_type="application/offset+octet-stream")  # fmt: skip
        assert response.status == 204 and not body.wrote_itself

    run(scenario)
