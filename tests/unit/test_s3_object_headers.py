"""The finished S3 object's Content-Type and Content-Disposition, from filetype/filename metadata."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pytusd.info import UploadInfo
from pytusd.stores.s3 import S3Store
from pytusd.stores.s3.layout import object_headers
from tests.support.fake_s3 import FakeS3


@pytest.mark.parametrize(
    ("metadata", "content_type", "disposition"),
    [
        ({}, "application/octet-stream", "attachment"),
        ({"filetype": "image/png", "filename": "cat.png"}, "image/png", 'inline; filename="cat.png"'),
        ({"filetype": "text/html", "filename": "x.html"}, "text/html", 'attachment; filename="x.html"'),
        ({"filetype": "not a type"}, "application/octet-stream", "attachment"),
        ({"filetype": "text/plain\r\nX-Evil: 1"}, "application/octet-stream", "attachment"),
        ({"filename": 'a"b\\c\n.txt'}, "application/octet-stream", 'attachment; filename="c.txt"'),
        (
            {"filetype": "text/plain", "filename": "résumé.txt"},
            "text/plain",
            "inline; filename=\"r_sum_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt",
        ),
    ],
)
def test_headers_are_sanitised(metadata: dict[str, str], content_type: str, disposition: str) -> None:
    assert object_headers(UploadInfo(id="x", size=1, metadata=metadata)) == (content_type, disposition)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.mark.parametrize("size", [0, 3])
def test_set_when_the_multipart_upload_starts(tmp_path: Path, size: int) -> None:
    fake = FakeS3()

    async def scenario() -> None:
        store = S3Store("bucket", client=fake, temp_dir=str(tmp_path))
        await store.start()
        try:
            info = UploadInfo(id="up", size=size, metadata={"filetype": "image/png", "filename": "cat.png"})
            await store.create(info)
            if size:
                upload = fake.upload_of("up")
                assert (upload.content_type, upload.content_disposition) == ("image/png", 'inline; filename="cat.png"')
                await store.write_chunk("up", 0, chunks(b"abc"))
            finished = fake.objects["up"]
            assert (finished.content_type, finished.content_disposition) == ("image/png", 'inline; filename="cat.png"')
        finally:
            await store.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
