"""The dispatcher and both front ends driven without a socket: Request in, Response out, a store behind."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from pytusd.config import Config
from pytusd.dispatch import Dispatcher
from pytusd.messages import Request, Response
from pytusd.stores.file import FileStore
from pytusd.stores.memory import MemoryStore
from pytusd.uploads import UploadService

SHA1_HELLO = base64.b64encode(hashlib.sha1(b"hello").digest()).decode()


class ListBody:
    """A body that yields given chunks."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)
        self.stopped: str | None = None
        self.disconnected = False
        self.complete = False
        self.can_write_into = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        self.complete = True

    def stop(self, reason: str) -> None:
        self.stopped = reason

    def trailers(self) -> Mapping[str, str] | None:
        return None


def call(handler: Dispatcher, method: str, path: str, body: ListBody | None = None, **headers: str) -> Response:
    hdrs = {"host": "example.org", "tus-resumable": "1.0.0"}
    hdrs.update({k.replace("_", "-").lower(): v for k, v in headers.items()})
    request = Request(method=method, path=path, headers=hdrs)
    if body is not None:
        request.body = body
    return asyncio.run(handler.handle(request))


def header(response: Response, name: str) -> str | None:
    return next((v for k, v in response.headers if k == name), None)


def make(**config: object) -> Dispatcher:
    return Dispatcher(UploadService(MemoryStore(), Config(**config)))  # type: ignore[arg-type]


def test_create_patch_head() -> None:
    handler = make()
    created = call(handler, "POST", "/files/", upload_length="11")
    assert created.status == 201
    location = header(created, "location")
    assert location is not None and location.startswith("http://example.org/files/")
    path = location.removeprefix("http://example.org")
    patched = call(
        handler, "PATCH", path, ListBody(b"hello ", b"world"),
        upload_offset="0", content_type="application/offset+octet-stream", content_length="11",
    )  # fmt: skip
    assert patched.status == 204 and header(patched, "upload-offset") == "11"
    head = call(handler, "HEAD", path)
    assert header(head, "upload-offset") == "11" and header(head, "upload-length") == "11"


def test_offset_mismatch_is_409_and_changes_nothing() -> None:
    handler = make()
    path = header(call(handler, "POST", "/files/", upload_length="4"), "location").removeprefix("http://example.org")  # type: ignore[union-attr]
    response = call(
        handler, "PATCH", path, ListBody(b"ab"), upload_offset="2", content_type="application/offset+octet-stream"
    )
    assert response.status == 409 and header(response, "upload-offset") == "0"
    assert header(call(handler, "HEAD", path), "upload-offset") == "0"


def test_wrong_version_is_412_with_tus_version() -> None:
    response = call(make(), "POST", "/files/", tus_resumable="0.2.2", upload_length="1")
    assert response.status == 412 and header(response, "tus-version") == "1.0.0"


def test_checksum_mismatch_discards_the_chunk() -> None:
    handler = make()
    path = header(call(handler, "POST", "/files/", upload_length="5"), "location").removeprefix("http://example.org")  # type: ignore[union-attr]
    response = call(
        handler, "PATCH", path, ListBody(b"hello"), upload_offset="0",
        content_type="application/offset+octet-stream", upload_checksum="sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    )  # fmt: skip
    assert response.status == 460
    assert header(call(handler, "HEAD", path), "upload-offset") == "0"


def test_max_size() -> None:
    handler = make(max_size=10)
    assert call(handler, "POST", "/files/", upload_length="11").status == 413
    options = call(handler, "OPTIONS", "/files/")
    assert header(options, "tus-max-size") == "10"


# -- bodies that can write themselves into a file (pytusd.splice) -----------------------------------


class SelfWritingBody(ListBody):
    """A body that, like one served by pytusd's serving layer, can write itself into a descriptor."""

    def __init__(self, *chunks: bytes) -> None:
        super().__init__(*chunks)
        self.can_write_into = True
        self.wrote_itself = False

    async def write_into(self, fd: int) -> int:
        self.wrote_itself = True
        written = sum(os.write(fd, chunk) for chunk in self.chunks)
        self.complete = True
        return written


def _file_upload(tmp_path: Path, size: int) -> tuple[Dispatcher, FileStore, str]:
    store = FileStore(tmp_path)
    asyncio.run(store.start())
    handler = Dispatcher(UploadService(store, Config()))
    location = header(call(handler, "POST", "/files/", upload_length=str(size)), "location")
    assert location is not None
    return handler, store, location.removeprefix("http://example.org")


def _patch(handler: Dispatcher, path: str, body: ListBody, **headers: str) -> Response:
    return call(
        handler, "PATCH", path, body, upload_offset="0", content_type="application/offset+octet-stream", **headers
    )


def test_body_writes_itself_into_the_file_when_nothing_needs_its_bytes(tmp_path: Path) -> None:
    handler, store, path = _file_upload(tmp_path, 11)
    body = SelfWritingBody(b"hello ", b"world")
    assert _patch(handler, path, body, content_length="11").status == 204
    assert body.wrote_itself
    assert header(call(handler, "HEAD", path), "upload-offset") == "11"
    with open(store.data_path(path.rsplit("/", 1)[1]), "rb") as f:
        assert f.read() == b"hello world"


@pytest.mark.parametrize(
    ("digest", "status", "offset"), [(SHA1_HELLO, 204, "5"), ("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", 460, "0")]
)
def test_checksummed_body_is_read_and_verified_never_written_directly(
    tmp_path: Path, digest: str, status: int, offset: str
) -> None:
    handler, _, path = _file_upload(tmp_path, 5)
    body = SelfWritingBody(b"hello")
    assert _patch(handler, path, body, content_length="5", upload_checksum=f"sha1 {digest}").status == status
    assert not body.wrote_itself
    assert header(call(handler, "HEAD", path), "upload-offset") == offset


def test_body_of_unknown_length_is_read_and_cut_at_the_upload_size(tmp_path: Path) -> None:
    handler, _, path = _file_upload(tmp_path, 4)
    body = SelfWritingBody(b"ab", b"cdef")
    assert _patch(handler, path, body).status == 413
    assert not body.wrote_itself
    assert header(call(handler, "HEAD", path), "upload-offset") == "4"


def test_store_without_files_reads_a_self_writing_body() -> None:
    handler = make()
    location = header(call(handler, "POST", "/files/", upload_length="5"), "location")
    assert location is not None
    body = SelfWritingBody(b"hel", b"lo")
    assert _patch(handler, location.removeprefix("http://example.org"), body, content_length="5").status == 204
    assert not body.wrote_itself
