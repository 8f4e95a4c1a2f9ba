"""S3Store without content hashes on a real Swift: the look above the counted parts (ListParts with
a part-number marker) and parts named pending by their size alone.

Unit tests (tests/unit/test_s3_pending_unhashed.py) hold the rules on a fake; these check that
Swift's ListParts answers the look as S3 does, and that what the store leaves reads back whole.
"""

from __future__ import annotations

import os
import time

import pytest
from tests.integration.s3_helpers import (
    BUCKET,
    MiB,
    chunks_of,
    open_store,
    run,
    s3_env_fixture,  # noqa: F401 - fixture
    stored_upload,
    swift_fixture,  # noqa: F401 - fixture
    unique_prefix,
)
from tests.services.swift import SwiftS3Server

from pytusd.info import UploadInfo
from pytusd.stores.s3 import S3Store
from pytusd.stores.s3.layout import META_PENDING, STORAGE_MULTIPART

pytestmark = pytest.mark.services
#: S3 only (see tests/conftest.py): these tests start their own stores on Swift.
STORES = ("s3",)
PART = 5 * MiB


def test_part_after_follows_the_part_number_marker(s3_env: SwiftS3Server) -> None:
    async def scenario() -> None:
        async with open_store(s3_env, unique_prefix()) as store:
            info = await store.create(UploadInfo(id="up", size=3 * PART, created_at=time.time()))
            key, multipart = info.storage["Key"], info.storage[STORAGE_MULTIPART]
            assert not await store.client.part_after(key, multipart, 0)  # a new upload holds no part
            await store.write_chunk("up", 0, chunks_of(os.urandom(2 * PART)))
            assert await store.client.part_after(key, multipart, 0)
            assert await store.client.part_after(key, multipart, 1)
            assert not await store.client.part_after(key, multipart, 2)

    run(scenario())


def _pending_names(swift: SwiftS3Server, key: str) -> str | None:
    client = swift.client()
    try:
        head = client.head_object(Bucket=BUCKET, Key=key)
        value: str | None = head["Metadata"].get(META_PENDING)
        return value
    finally:
        client.close()


def test_parts_named_by_their_size_read_back_whole(s3_env: SwiftS3Server) -> None:
    """PATCHes of one part each, on one server and then another: each is named pending (the new
    upload is clean, the next server looks above), and every reader counts them."""
    prefix = unique_prefix()
    data = os.urandom(4 * PART)

    async def patch(store: S3Store, offset: int, *, held_here_last: bool) -> None:
        info = await store.get_info_to_write("up", held_here_last=held_here_last)
        assert info.offset == offset
        end = offset + PART
        assert await store.write_chunk("up", offset, chunks_of(data[offset:end]), length=PART) == PART

    async def scenario() -> None:
        async with open_store(s3_env, prefix, content_hashes=False) as store:
            await store.create(UploadInfo(id="up", size=len(data), created_at=time.time()))
            await patch(store, 0, held_here_last=False)
            assert _pending_names(s3_env, store.part_key("up")) == f"1:{PART}:"
            await patch(store, PART, held_here_last=True)
            assert _pending_names(s3_env, store.part_key("up")) == f"2:{PART}:"
        held, _ = stored_upload(["--s3-object-prefix", prefix], "up")
        assert held == data[: 2 * PART]
        async with open_store(s3_env, prefix, content_hashes=False) as other:
            await patch(other, 2 * PART, held_here_last=False)
            assert _pending_names(s3_env, other.part_key("up")) == f"3:{PART}:"
            await patch(other, 3 * PART, held_here_last=True)  # the last part completes it
            assert b"".join([b async for b in other.read("up")]) == data

    run(scenario())
