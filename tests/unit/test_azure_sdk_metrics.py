"""The Azure client times each List Blobs request once: per page fetched, not for the end of the
paging (azure-core ends it without a request when the last page had no continuation token)."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

pytest.importorskip("azure.storage.blob")

from azure.core.async_paging import AsyncItemPaged

from pytusd.metrics.prometheus import Metrics
from pytusd.stores.azure.sdk import AzureClient


def _listing(pages: dict[str | None, tuple[list[str], str | None]]) -> tuple[AzureClient, Metrics, list[int]]:
    requests = [0]

    async def get_next(token: str | None) -> str | None:
        requests[0] += 1
        return token

    async def extract(token: str | None) -> tuple[str | None, list[Any]]:
        items, following = pages[token]
        return following, [types.SimpleNamespace(name=i, creation_time=None) for i in items]

    class Container:
        def list_blobs(self, name_starts_with: str) -> AsyncItemPaged[Any]:
            return AsyncItemPaged(get_next, extract)

    client = AzureClient(account_name="a", account_key="a2V5", container="c")
    metrics = Metrics()
    client.metrics = metrics
    client._container = Container()  # type: ignore[assignment]
    return client, metrics, requests


def _timed(metrics: Metrics) -> float:
    for line in metrics.exposition().decode().splitlines():
        if line.startswith('pytusd_store_request_duration_seconds_count{operation="list_blobs",store="azure"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(
    "pages",
    [
        {None: (["a", "b"], None)},
        {None: (["a"], "t1"), "t1": ([], "t2"), "t2": (["b"], None)},
    ],
)
def test_one_sample_per_page_request(pages: dict[str | None, tuple[list[str], str | None]]) -> None:
    client, metrics, requests = _listing(pages)

    async def names() -> list[str]:
        return [item.name async for item in client.list_blobs("p")]

    assert asyncio.run(names()) == ["a", "b"]
    assert requests[0] == len(pages)
    assert _timed(metrics) == len(pages)
