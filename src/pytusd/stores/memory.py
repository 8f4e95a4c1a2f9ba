"""Uploads in process memory: for unit tests and examples, not for production."""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence

from pytusd.info import UploadInfo
from pytusd.stores.base import DataStore, UploadExists, UploadNotFound


class MemoryStore(DataStore):
    features = frozenset({"termination", "concatenation", "creation-defer-length", "download"})

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        #: When a write happened (expiry counts from it); a test passes the service's fake clock.
        self.clock = clock
        self._infos: dict[str, UploadInfo] = {}
        self._data: dict[str, bytearray] = {}
        self._written_at: dict[str, float] = {}

    def _get(self, upload_id: str) -> UploadInfo:
        try:
            return self._infos[upload_id]
        except KeyError:
            raise UploadNotFound(upload_id) from None

    async def create(self, info: UploadInfo) -> UploadInfo:
        if info.id in self._infos:
            raise UploadExists(info.id)
        info.offset = 0
        self._infos[info.id] = copy.deepcopy(info)
        self._data[info.id] = bytearray()
        self._written_at[info.id] = self.clock()
        return info

    async def get_info(self, upload_id: str) -> UploadInfo:
        info = copy.deepcopy(self._get(upload_id))
        info.offset = len(self._data[upload_id])
        return info

    async def update_info(self, info: UploadInfo) -> None:
        self._get(info.id)
        self._infos[info.id] = copy.deepcopy(info)

    async def write_chunk(
        self,
        upload_id: str,
        offset: int,
        source: AsyncIterable[bytes],
        *,
        all_or_nothing: bool = False,
        length: int | None = None,
    ) -> int:
        self._get(upload_id)
        data = self._data[upload_id]
        del data[offset:]
        target = bytearray() if all_or_nothing else data
        start = len(target)
        try:
            async for chunk in source:
                target += chunk
        finally:
            self._written_at[upload_id] = self.clock()
        if all_or_nothing:
            data += target
        return len(target) - start

    async def add_pending_final(self, partial_id: str, final_id: str) -> None:
        pending = self._get(partial_id).pending_finals
        if final_id not in pending:
            pending.append(final_id)

    async def read(self, upload_id: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        self._get(upload_id)
        data = self._data[upload_id]
        yield bytes(data[start : len(data) if end is None else end])

    async def terminate(self, upload_id: str) -> None:
        self._get(upload_id)
        del self._infos[upload_id], self._data[upload_id], self._written_at[upload_id]

    async def concatenate(self, final: UploadInfo, partials: Sequence[UploadInfo]) -> None:
        joined = bytearray()
        for partial in partials:
            joined += self._data[self._get(partial.id).id]
        self._data[final.id] = joined

    async def list_uploads(self) -> AsyncIterator[str]:
        for upload_id in list(self._infos):
            yield upload_id

    async def last_write_time(self, upload_id: str) -> float:
        self._get(upload_id)
        return self._written_at[upload_id]
