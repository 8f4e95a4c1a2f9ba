"""S3Store on a real Swift: the look above the counted parts (ListParts with a part-number marker)
and parts named by their size alone (a run), with and without content hashes.

Unit tests (tests/unit/test_s3_pending_unhashed.py, tests/unit/test_s3_runs.py) hold the rules
on a fake; these check that Swift's ListParts answers the look as S3 does, and that what the
store leaves reads back whole.
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
from pytusd.stores.s3.layout import META_PARTS, META_RUN, STORAGE_MULTIPART

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


def _named(swift: SwiftS3Server, key: str) -> tuple[str | None, str | None]:
    """(committed parts, the run) the incomplete part names."""
    client = swift.client()
    try:
        metadata = client.head_object(Bucket=BUCKET, Key=key)["Metadata"]
        return metadata.get(META_PARTS), metadata.get(META_RUN)
    finally:
        client.close()


@pytest.mark.parametrize("hashes", [False, True])
def test_parts_named_by_their_size_read_back_whole(s3_env: SwiftS3Server, hashes: bool) -> None:
    """PATCHes of one part each, on one server and then another: the first names a run (the new
    upload is clean), the others go on with it without a commit (the next server looks above
    first), the last ends it before it goes up, and every reader counts them."""
    prefix = unique_prefix()
    data = os.urandom(4 * PART)

    async def patch(store: S3Store, offset: int, *, held_here_last: bool) -> None:
        info = await store.get_info_to_write("up", held_here_last=held_here_last)
        assert info.offset == offset
        end = offset + PART
        assert await store.write_chunk("up", offset, chunks_of(data[offset:end]), length=PART) == PART

    async def scenario() -> None:
        async with open_store(s3_env, prefix, content_hashes=hashes) as store:
            await store.create(UploadInfo(id="up", size=len(data), created_at=time.time()))
            await patch(store, 0, held_here_last=False)
            assert _named(s3_env, store.part_key("up")) == ("0", f"1:{PART}")
            await patch(store, PART, held_here_last=True)
            assert _named(s3_env, store.part_key("up")) == ("0", f"1:{PART}")
        held, _ = stored_upload(["--s3-object-prefix", prefix], "up")
        assert held == data[: 2 * PART]
        async with open_store(s3_env, prefix, content_hashes=hashes) as other:
            await patch(other, 2 * PART, held_here_last=False)
            assert _named(s3_env, other.part_key("up")) == ("0", f"1:{PART}")
            held, _ = stored_upload(["--s3-object-prefix", prefix], "up")
            assert held == data[: 3 * PART]
            await patch(other, 3 * PART, held_here_last=True)  # the last part completes it
            assert b"".join([b async for b in other.read("up")]) == data

    run(scenario())
