"""What the Azure store does beyond the contract, on the in-memory container: blocks, commits,
merging small blocks, concatenation ranges, errors, and its flags (nothing connects)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from pytusd.info import UploadInfo
from pytusd.stores.azure.flags import AZURE_FLAGS, store_from_settings
from pytusd.stores.azure.layout import MAX_BLOCK_SIZE, MAX_BLOCKS, MiB, block_size_for
from pytusd.stores.azure.sdk import AzureClient
from pytusd.stores.azure.store import AzureStore
from pytusd.stores.base import InvalidStorage, StoreUnavailable
from tests.support.fake_azure import FakeAzure

BLOCK = 1000


class Gone(Exception):
    """The client went away mid-body."""


async def body(data: bytes, step: int = 300, *, fail: bool = False) -> AsyncIterator[bytes]:
    for at in range(0, len(data), step):
        await asyncio.sleep(0)
        yield data[at : at + step]
    if fail:
        raise Gone


def run(test: Callable[[AzureStore, FakeAzure], Awaitable[None]], **kwargs: Any) -> None:
    fake = FakeAzure()
    store = AzureStore("c", fake, object_prefix="p", block_size=BLOCK, **kwargs)

    async def main() -> None:
        await store.start()
        try:
            await asyncio.wait_for(test(store, fake), 30)
        finally:
            await store.close()

    asyncio.run(main())


def blocks_of(fake: FakeAzure, name: str) -> list[int]:
    return [len(data) for _, data in fake.blobs[name].blocks]


def test_layout_and_info_blob() -> None:
    async def test(store: AzureStore, fake: FakeAzure) -> None:
        await store.create(UploadInfo("a/b", size=5, metadata={"filename": "x.txt", "filetype": "text/plain"}))
        stored = json.loads(fake.blobs["p/a/b.info"].data)
        assert stored["Storage"] == {"Type": "azurestore", "Container": "c", "Key": "p/a/b"}
        assert "p/a/b" not in fake.blobs  # no data blob until bytes are committed
        await store.write_chunk("a/b", 0, body(b"hello"))
        assert fake.data("p/a/b") == b"hello"
        assert fake.blobs["p/a/b"].content_type == "text/plain"

    run(test)


def test_a_hook_cannot_choose_the_blob() -> None:
    async def test(store: AzureStore, fake: FakeAzure) -> None:
        with pytest.raises(InvalidStorage):
            await store.create(UploadInfo("a", size=5, storage={"Key": "elsewhere"}))
        with pytest.raises(InvalidStorage):
            await store.create(UploadInfo("a", size=5, storage={"Container": "other"}))
        assert not fake.blobs

    run(test)


def test_blocks_are_staged_while_the_body_arrives_and_committed_each() -> None:
    async def test(store: AzureStore, fake: FakeAzure) -> None:
        data = bytes(range(256)) * 20  # 5120 bytes: five full blocks and a small one
        await store.create(UploadInfo("u", size=len(data)))
        assert await store.write_chunk("u", 0, body(data)) == len(data)
        assert blocks_of(fake, "p/u") == [BLOCK] * 5 + [120]
        assert fake.calls["commit_block_list"] == 6
        assert fake.data("p/u") == data
        assert len({len(i) for i, _ in fake.blobs["p/u"].blocks}) == 1  # IDs of one length
        assert fake.completed == {"p/u"}  # the last commit applies the access tier

    run(test)


def test_small_writes_merge_into_full_blocks() -> None:
    async def test(store: AzureStore, fake: FakeAzure) -> None:
        await store.create(UploadInfo("u", size=None))
        data = b""
        for i in range(40):
            piece = bytes([i]) * 130
            assert await store.write_chunk("u", len(data), body(piece)) == 130
            data += piece
        # 5200 bytes in 40 requests: still every block full but the last.
        assert blocks_of(fake, "p/u") == [1040] * 5
        assert fake.data("p/u") == data
        assert (await store.get_info("u")).offset == len(data)

    run(test)


def test_a_broken_body_keeps_its_bytes_but_all_or_nothing_keeps_none() -> None:
    async def test(store: AzureStore, fake: FakeAzure) -> None:
        await store.create(UploadInfo("u", size=10_000))
        with pytest.raises(Gone):
            await store.write_chunk("u", 0, body(b"x" * 2500, fail=True))
        assert (await store.get_info("u")).offset == 2500
        commits = fake.calls["commit_block_list"]
        with pytest.raises(Gone):
            await store.write_chunk("u", 2500, body(b"y" * 3000, fail=True), all_or_nothing=True)
        assert fake.calls["commit_block_list"] == commits  # blocks staged, none committed
        assert (await store.get_info("u")).offset == 2500
        assert fake.data("p/u") == b"x" * 2500

    run(test)


def test_a_failed_commit_loses_only_unacknowledged_bytes() -> None:
    async def test(store: AzureStore, fake: FakeAzure) -> None:
        await store.create(UploadInfo("u", size=10_000))
        await store.write_chunk("u", 0, body(b"a" * 1500))
        fake.fail("commit_block_list", unavailable=True)
        with pytest.raises(StoreUnavailable):
            await store.write_chunk("u", 1500, body(b"b" * 3000))
        info = await store.get_info("u")
        assert info.offset == 1500 and fake.data("p/u") == b"a" * 1500
        # The client resumes from the offset Azure holds, on a new store (a restart) as well.
        again = AzureStore("c", fake, object_prefix="p", block_size=BLOCK)
        assert await again.write_chunk("u", 1500, body(b"b" * 3000)) == 3000
        assert fake.data("p/u") == b"a" * 1500 + b"b" * 3000

    run(test)


def test_unreachable_azure_is_unavailable() -> None:
    async def test(store: AzureStore, fake: FakeAzure) -> None:
        fake.fail("download_blob", unavailable=True)
        with pytest.raises(StoreUnavailable):
            await store.get_info("u")

    run(test)


def test_concatenation_copies_ranges_of_at_most_the_copy_size() -> None:
    async def test(store: AzureStore, fake: FakeAzure) -> None:
        parts = {"p1": b"a" * 2500, "p2": b"", "p3": b"b" * 700}
        for pid, data in parts.items():
            await store.create(UploadInfo(pid, size=len(data), is_partial=True))
            await store.write_chunk(pid, 0, body(data))
        final = await store.create(UploadInfo("f", is_final=True, partial_uploads=list(parts)))
        await store.concatenate(final, [await store.get_info(p) for p in parts])
        assert fake.calls["stage_block_from_url"] == 3 + 1  # 1000 + 1000 + 500, then 700
        assert blocks_of(fake, "p/f") == [1000, 1000, 500, 700]
        assert fake.data("p/f") == b"a" * 2500 + b"b" * 700

    run(test, copy_size=1000)


def test_block_sizes_grow_for_huge_uploads() -> None:
    assert block_size_for(None, 8 * MiB) == 8 * MiB
    assert block_size_for(10 * 1024 * MiB, 8 * MiB) == 8 * MiB
    huge = 100 * 1024**4
    size = block_size_for(huge, 8 * MiB)
    assert size * (MAX_BLOCKS - 1000) >= huge and size <= MAX_BLOCK_SIZE


# -- flags ------------------------------------------------------------------------------------------

CREDENTIALS = {"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_KEY": "a2V5"}


def settings(**overrides: Any) -> dict[str, Any]:
    values = {flag.name.replace("-", "_"): flag.default for flag in AZURE_FLAGS}
    values.update(overrides)
    return values


def test_flags_are_tusds() -> None:
    assert {f.name for f in AZURE_FLAGS} == {
        "azure-storage",
        "azure-container-access-type",
        "azure-blob-access-tier",
        "azure-object-prefix",
        "azure-endpoint",
    }
    assert store_from_settings(settings(), CREDENTIALS) is None


def test_store_from_settings() -> None:
    store = store_from_settings(
        settings(azure_storage="uploads", azure_object_prefix="tus", azure_blob_access_tier="Cool"), CREDENTIALS
    )
    assert isinstance(store, AzureStore) and isinstance(store.client, AzureClient)
    assert store.layout.prefix == "tus/" and store.container == "uploads"
    assert store.client.endpoint == "https://acct.blob.core.windows.net"


@pytest.mark.parametrize(
    ("overrides", "environ", "message"),
    [
        ({}, {}, "AZURE_STORAGE_ACCOUNT"),
        ({"azure_container_access_type": "public"}, CREDENTIALS, "access-type"),
        ({"azure_blob_access_tier": "frozen"}, CREDENTIALS, "access-tier"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, str], environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store_from_settings(settings(azure_storage="uploads", **overrides), environ)


def test_a_file_store_server_never_imports_the_sdk() -> None:
    code = "import sys, pytusd.cli; print(any(m.startswith('azure') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_pausing_body_is_committed_while_it_waits() -> None:
    async def test(store: AzureStore, fake: FakeAzure) -> None:
        await store.create(UploadInfo("u", size=10_000))
        seen: list[int] = []

        async def paced() -> AsyncIterator[bytes]:
            for step in range(3):
                yield b"z" * 100
                # The body pauses here: the store commits what it has meanwhile.
                for _ in range(200):
                    await asyncio.sleep(0.02)
                    if (await store.get_info("u")).offset == 100 * (step + 1):
                        break
                seen.append((await store.get_info("u")).offset)

        assert await store.write_chunk("u", 0, paced()) == 300
        assert seen == [100, 200, 300]
        assert blocks_of(fake, "p/u") == [300]  # the small block was merged each time

    run(test)


def test_a_pausing_all_or_nothing_body_commits_nothing_early() -> None:
    async def test(store: AzureStore, fake: FakeAzure) -> None:
        await store.create(UploadInfo("u", size=10_000))

        async def paced() -> AsyncIterator[bytes]:
            yield b"z" * 100
            await asyncio.sleep(0.5)
            assert (await store.get_info("u")).offset == 0
            raise Gone

        with pytest.raises(Gone):
            await store.write_chunk("u", 0, paced(), all_or_nothing=True)
        assert fake.calls["commit_block_list"] == 0

    run(test)
