"""tuspy (``tusclient``, PyPI) against a real pytusd process."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from tusclient import client as tus_client
from tusclient.exceptions import TusUploadFailed
from tusclient.storage.filestorage import FileStorage
from tusclient.uploader import AsyncUploader, Uploader

from tests.interop.helpers import (
    KIB,
    MIB,
    TUS,
    assert_stored,
    decode_metadata,
    head,
    write_random_file,
)
from tests.support.server import ServerProcess

CHUNK = 256 * KIB


def _chunked(uploader: Uploader) -> list[int]:
    """Upload chunk by chunk (what ``upload()`` does), returning the offset after each PATCH."""
    offsets = []
    while uploader.offset < uploader.get_file_size():
        uploader.upload_chunk()
        offsets.append(uploader.offset)
    return offsets


def test_chunked_upload(server: ServerProcess, tmp_path: Path) -> None:
    path, data = write_random_file(tmp_path, 2 * MIB + 4321, seed=11)
    uploader = tus_client.TusClient(server.url).uploader(str(path), chunk_size=CHUNK)
    offsets = _chunked(uploader)

    assert len(offsets) == -(-len(data) // CHUNK) >= 8
    assert offsets == [min(len(data), CHUNK * (i + 1)) for i in range(len(offsets))]
    assert uploader.url is not None
    assert_stored(server, uploader.url, data)


def test_upload_from_stream(server: ServerProcess, tmp_path: Path) -> None:
    path, data = write_random_file(tmp_path, 1 * MIB + 1, seed=12)
    with open(path, "rb") as stream:
        uploader = tus_client.TusClient(server.url).uploader(file_stream=stream, chunk_size=CHUNK)
        uploader.upload()
    assert_stored(server, uploader.url, data)


def test_async_uploader(server: ServerProcess, tmp_path: Path) -> None:
    path, data = write_random_file(tmp_path, 1 * MIB + 77, seed=13)
    uploader = tus_client.TusClient(server.url).async_uploader(str(path), chunk_size=CHUNK)
    assert isinstance(uploader, AsyncUploader)
    asyncio.run(uploader.upload())
    assert uploader.offset == len(data)
    assert_stored(server, uploader.url, data)


def test_resume_with_url_storage(server: ServerProcess, tmp_path: Path) -> None:
    """Upload part, stop; a new client finds the URL in its storage, asks HEAD, finishes."""
    path, data = write_random_file(tmp_path, 3 * MIB, seed=14)
    storage_path = str(tmp_path / "tuspy-urls.json")

    storage = FileStorage(storage_path)
    first = tus_client.TusClient(server.url).uploader(
        str(path), chunk_size=CHUNK, store_url=True, url_storage=storage, metadata={"filename": "r.bin"}
    )
    first.upload(stop_at=MIB + CHUNK)
    assert first.offset == MIB + CHUNK
    storage.close()
    url = first.url
    assert head(server, url).headers["upload-offset"] == str(MIB + CHUNK)

    storage = FileStorage(storage_path)
    second = tus_client.TusClient(server.url).uploader(
        str(path), chunk_size=CHUNK, store_url=True, url_storage=storage, metadata={"filename": "r.bin"}
    )
    assert second.url == url
    assert second.offset == MIB + CHUNK  # from the server's HEAD
    offsets = _chunked(second)
    storage.close()
    assert len(offsets) >= 2
    assert_stored(server, url, data)


def test_resume_with_url_after_interrupted_upload(server: ServerProcess, tmp_path: Path) -> None:
    """The first client dies in the middle (its file read fails); a new Uploader(url=...) resumes."""
    path, data = write_random_file(tmp_path, 2 * MIB, seed=15)

    class Failing:
        def __init__(self) -> None:
            self.inner = open(path, "rb")  # noqa: SIM115 - closed below

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def read(self, size: int = -1) -> bytes:
            if self.inner.tell() >= MIB:
                raise OSError("disk went away")
            return self.inner.read(size)

    failing = Failing()
    client = tus_client.TusClient(server.url)
    first = client.uploader(file_stream=failing, chunk_size=CHUNK)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="disk went away"):
        first.upload()
    failing.inner.close()
    assert first.url is not None
    assert first.offset == MIB

    second = client.uploader(str(path), url=first.url, chunk_size=CHUNK)
    assert second.offset == MIB
    second.upload()
    assert_stored(server, first.url, data)


def test_sha1_checksum(server: ServerProcess, tmp_path: Path) -> None:
    path, data = write_random_file(tmp_path, 1 * MIB + 3, seed=16)
    uploader = tus_client.TusClient(server.url).uploader(str(path), chunk_size=CHUNK, upload_checksum=True)
    uploader.upload_chunk()
    sent = uploader.request._request_headers["upload-checksum"]
    algorithm, _, digest = sent.partition(" ")
    assert algorithm == "sha1" and digest
    offsets = [uploader.offset, *_chunked(uploader)]
    assert len(offsets) == 5
    assert_stored(server, uploader.url, data)


@pytest.mark.parametrize("algorithm", ["md5", "sha256", "sha512"])
def test_other_checksums(server: ServerProcess, tmp_path: Path, algorithm: str) -> None:
    """tuspy lets an application choose another hashlib algorithm; the server lists these."""
    options = httpx.options(server.url)
    assert algorithm in options.headers["tus-checksum-algorithm"].split(",")

    class ChecksumUploader(Uploader):
        CHECKSUM_ALGORITHM_PAIR = (algorithm, getattr(hashlib, algorithm))

    path, data = write_random_file(tmp_path, 600 * KIB, seed=17)
    uploader = ChecksumUploader(str(path), client=tus_client.TusClient(server.url), chunk_size=CHUNK,
                                upload_checksum=True)  # fmt: skip
    uploader.upload()
    assert uploader.request._request_headers["upload-checksum"].startswith(f"{algorithm} ")
    assert_stored(server, uploader.url, data)


def test_checksum_mismatch_is_460_and_chunk_discarded(server: ServerProcess, tmp_path: Path) -> None:
    class WrongDigest:
        def __init__(self, data: bytes) -> None:
            self.inner = hashlib.sha1(data + b"!")

        def digest(self) -> bytes:
            return self.inner.digest()

    class BadUploader(Uploader):
        CHECKSUM_ALGORITHM_PAIR = ("sha1", WrongDigest)

    path, data = write_random_file(tmp_path, 3 * CHUNK, seed=18)
    client = tus_client.TusClient(server.url)
    good = client.uploader(str(path), chunk_size=CHUNK, upload_checksum=True)
    good.upload(stop_at=CHUNK)
    bad = BadUploader(str(path), url=good.url, client=client, chunk_size=CHUNK, upload_checksum=True)
    assert bad.offset == CHUNK
    with pytest.raises(TusUploadFailed) as failure:
        bad.upload_chunk()
    assert failure.value.status_code == 460
    assert head(server, good.url).headers["upload-offset"] == str(CHUNK)

    again = client.uploader(str(path), url=good.url, chunk_size=CHUNK, upload_checksum=True)
    again.upload()
    assert_stored(server, good.url, data)


def test_metadata_round_trip(server: ServerProcess, tmp_path: Path) -> None:
    path, data = write_random_file(tmp_path, 100 * KIB, seed=19)
    metadata = {
        "filename": "résumé 2024 (final).pdf",
        "filetype": "application/pdf",
        "name": "résumé 2024 (final).pdf",
        "relativePath": "null",  # Uppy sends the string "null"
        "emoji": "\U0001f4c4 ✓",
        "comma,free-key": "value, with, commas",
    }
    with pytest.raises(ValueError):  # tuspy refuses keys with commas or spaces itself
        tus_client.TusClient(server.url).uploader(str(path), metadata=metadata).upload()
    del metadata["comma,free-key"]
    metadata["empty"] = ""
    uploader = tus_client.TusClient(server.url).uploader(str(path), metadata=metadata, chunk_size=CHUNK)
    uploader.upload()
    assert_stored(server, uploader.url, data)
    assert decode_metadata(head(server, uploader.url).headers.get("upload-metadata")) == metadata


def test_empty_upload_metadata_header(server: ServerProcess, tmp_path: Path) -> None:
    """tuspy sends ``Upload-Metadata:`` with an empty value when there is no metadata."""
    path, data = write_random_file(tmp_path, 300 * KIB, seed=20)
    uploader = tus_client.TusClient(server.url).uploader(str(path), chunk_size=CHUNK)
    assert uploader.get_url_creation_headers()["upload-metadata"] == ""
    uploader.upload()
    assert_stored(server, uploader.url, data)
    assert not head(server, uploader.url).headers.get("upload-metadata")

    # The same header on the wire, byte for byte as requests sends it.
    created = httpx.post(server.url, headers={**TUS, "Upload-Length": "0", "Upload-Metadata": ""})
    assert created.status_code == 201, created.text
    assert not head(server, urljoin(server.url, created.headers["location"])).headers.get("upload-metadata")


def test_empty_file(server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    uploader = tus_client.TusClient(server.url).uploader(str(path), chunk_size=CHUNK)
    uploader.upload()
    assert uploader.url is not None
    assert_stored(server, uploader.url, b"")
