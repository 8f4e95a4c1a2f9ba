"""``s3_helpers.stored_upload``, the crash test's reading of an S3 upload around the store, checked
against a real server on Swift: committed parts, the incomplete part, a pending part (made by
rewriting the incomplete part's metadata), a stale incomplete part and a finished upload.
"""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest
from tests.integration.s3_helpers import (
    BUCKET,
    MiB,
    S3ServerProcess,
    s3_flags,
    stored_upload,
    swift_fixture,  # noqa: F401 - fixture
    unique_prefix,
)
from tests.services.swift import SwiftS3Server

from pytusd.stores.s3.layout import META_MULTIPART, META_PARTS, META_PENDING, META_RUN

pytestmark = pytest.mark.services
#: S3 only (see tests/conftest.py).
STORES = ("s3",)

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = "application/offset+octet-stream"


def _create(server: S3ServerProcess, size: int) -> str:
    with httpx.Client(base_url=server.base_url, headers=TUS, timeout=60.0) as client:
        created = client.post("/files/", headers={"Upload-Length": str(size)})
        assert created.status_code == 201, created.text
        return str(created.headers["location"]).rstrip("/").rsplit("/", 1)[-1]


def _patch(server: S3ServerProcess, upload_id: str, data: bytes, offset: int) -> int:
    headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": OCTET}
    response = httpx.patch(f"{server.url}{upload_id}", headers=headers, content=data, timeout=60.0)
    assert response.status_code == 204, response.text
    return int(response.headers["upload-offset"])


def _rewrite_part_metadata(swift: SwiftS3Server, key: str, metadata: dict[str, str]) -> None:
    client = swift.client()
    try:
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        client.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=metadata)
    finally:
        client.close()


def test_stored_upload_follows_the_layout(swift: SwiftS3Server, tmp_path: Path) -> None:
    prefix = unique_prefix()
    args = s3_flags(swift, prefix)  # 5 MiB parts
    server = S3ServerProcess(swift, args, tmp_path).start()
    try:
        data = random.Random(7).randbytes(13 * MiB)
        uid = _create(server, len(data))
        assert stored_upload(args, uid)[0] == b""
        offset = 0
        for step in (MiB, 3 * MiB, 2 * MiB, 4 * MiB + 123, MiB):  # through parts 1 and 2
            offset = _patch(server, uid, data[offset : offset + step], offset)
            stored, info = stored_upload(args, uid)
            assert len(stored) == offset and stored == data[:offset]
            assert info["Size"] == len(data)
    finally:
        server.kill()

    # A pending part: part 2 named in the metadata instead of counted, beside an empty incomplete part.
    client = swift.client()
    try:
        key, multipart = info["Storage"]["Key"], info["Storage"]["MultipartUploadId"]
        listed = {p["PartNumber"]: p for p in client.list_parts(Bucket=BUCKET, Key=key, UploadId=multipart)["Parts"]}
    finally:
        client.close()
    assert sorted(listed) == [1, 2], listed
    one, two = listed[1]["Size"], listed[1]["Size"] + listed[2]["Size"]  # parts vary in size
    part_key = f"{prefix}{uid}.part"
    md5 = listed[2]["ETag"].strip('"')
    base = {META_MULTIPART: multipart, META_PARTS: "1"}
    pending = {**base, META_PENDING: f"2:{two - one}:{md5}"}
    client = swift.client()
    try:  # an empty incomplete part, as beside a pending part
        client.put_object(Bucket=BUCKET, Key=part_key, Body=b"", Metadata=pending)
    finally:
        client.close()
    assert stored_upload(args, uid)[0] == data[:two]
    for wrong in (f"2:{two - one}:{'0' * 32}", f"2:{two - one - 1}:{md5}", f"3:{two - one}:{md5}", "garbage"):
        _rewrite_part_metadata(swift, part_key, {**base, META_PENDING: wrong})
        assert stored_upload(args, uid)[0] == data[:one], wrong
    # A run: every part from its first on, in order, at its size (here the two parts differ in size).
    assert one != two - one
    runs = (("1", f"2:{two - one}", two), ("0", f"1:{one}", one), ("1", f"3:{two - one}", one), ("1", f"2:{one}", one))
    for count, run, counted in runs:
        _rewrite_part_metadata(swift, part_key, {**base, META_PARTS: count, META_RUN: run})
        assert stored_upload(args, uid)[0] == data[:counted], run
    # An incomplete part of another multipart upload is stale: nothing counts.
    _rewrite_part_metadata(swift, part_key, {**base, META_MULTIPART: "other"})
    assert stored_upload(args, uid)[0] == b""

    # A committed part that S3 does not list: no reading, but a loud failure.
    _rewrite_part_metadata(swift, part_key, {**base, META_PARTS: "3"})
    with pytest.raises(AssertionError, match=r"committed parts \[3\]"):
        stored_upload(args, uid)

    # Finished: the object at the data key.
    _rewrite_part_metadata(swift, part_key, {**base, META_PARTS: "2"})
    server.start()
    try:
        assert _patch(server, uid, data[two:], two) == len(data)
        assert stored_upload(args, uid)[0] == data
    finally:
        server.kill()
