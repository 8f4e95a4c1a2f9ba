"""An in-memory GCS bucket implementing :class:`pytusd.stores.gcs.client.Bucket`.

The GCS store's logic (chunk commits, compose, state reconstruction) runs unchanged on it, so
unit tests check it without an emulator, including what the emulator does not do: the 32-source
limit of compose and ``ifGenerationMatch`` preconditions (both enforced here as GCS does).
:meth:`FakeGCS.fail` makes one operation fail; :attr:`FakeGCS.calls` counts operations.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from pytusd.stores.gcs.client import MAX_COMPOSE_SOURCES, GCSError, ObjectInfo, gcs_error


@dataclass
class Stored:
    data: bytes
    generation: int
    updated: float
    content_type: str


class FakeGCS:
    def __init__(self) -> None:
        self.objects: dict[str, Stored] = {}
        self.calls: Counter[str] = Counter()
        self._generations = itertools.count(1)
        #: operation -> (status, applied): the next such call fails (after taking effect if applied).
        self._faults: dict[str, tuple[int | None, bool]] = {}

    def fail(self, operation: str, status: int | None = 503, *, applied: bool = False) -> None:
        """The next ``operation`` fails with ``status`` (None: unreachable); ``applied``: after it took effect."""
        self._faults[operation] = (status, applied)

    def _check(self, operation: str, *, before: bool) -> None:
        self.calls[operation] += 1 if before else 0
        fault = self._faults.get(operation)
        if fault is not None and fault[1] != before:
            del self._faults[operation]
            raise gcs_error(operation, fault[0], "injected")

    def _store(self, name: str, data: bytes, content_type: str, if_generation: int | None) -> ObjectInfo:
        current = self.objects.get(name)
        if if_generation is not None and (current.generation if current else 0) != if_generation:
            raise GCSError("precondition", 412, f"{name} is not at generation {if_generation}")
        stored = Stored(data, next(self._generations), time.time(), content_type)
        self.objects[name] = stored
        return ObjectInfo(name, len(data), stored.generation, stored.updated)

    async def _op(self, operation: str) -> None:
        await asyncio.sleep(0)
        self._check(operation, before=True)

    async def open(self) -> None:
        """Nothing to connect to: the bucket lives in this object."""

    async def close(self) -> None:
        """Nothing to release."""

    async def check_bucket(self) -> None:
        await self._op("GetBucket")

    async def stat(self, name: str) -> ObjectInfo | None:
        await self._op("GetObjectMetadata")
        obj = self.objects.get(name)
        return None if obj is None else ObjectInfo(name, len(obj.data), obj.generation, obj.updated)

    async def get_bytes(self, name: str) -> bytes | None:
        await self._op("GetObject")
        obj = self.objects.get(name)
        return None if obj is None else obj.data

    async def open_range(self, name: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        await self._op("GetObjectRange")
        obj = self.objects.get(name)
        if obj is None:
            raise GCSError("GetObjectRange", 404, name)
        return _blocks(obj.data[start:end])

    async def put_bytes(
        self, name: str, data: bytes, *, content_type: str = "application/octet-stream", if_absent: bool = False
    ) -> None:
        await self._op("PutObject")
        self._store(name, data, content_type, 0 if if_absent else None)
        self._check("PutObject", before=False)

    async def put_file(self, name: str, path: str, size: int, *, if_absent: bool = False) -> ObjectInfo:
        await self._op("PutObject")
        with open(path, "rb") as body:
            data = body.read()
        assert len(data) == size, (len(data), size)
        info = self._store(name, data, "application/octet-stream", 0 if if_absent else None)
        self._check("PutObject", before=False)
        return info

    async def compose(
        self, name: str, sources: Sequence[str], *, if_generation: int | None = None, content_type: str | None = None
    ) -> ObjectInfo:
        await self._op("ComposeObject")
        if not 1 <= len(sources) <= MAX_COMPOSE_SOURCES:
            raise GCSError("ComposeObject", 400, f"{len(sources)} sources")
        missing = [s for s in sources if s not in self.objects]
        if missing:
            raise GCSError("ComposeObject", 404, f"no source {missing[0]}")
        data = b"".join(self.objects[s].data for s in sources)
        info = self._store(name, data, content_type or "application/octet-stream", if_generation)
        self._check("ComposeObject", before=False)
        return info

    async def delete(self, name: str) -> None:
        await self._op("DeleteObject")
        self.objects.pop(name, None)
        self._check("DeleteObject", before=False)

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        await self._op("ListObjects")
        for name in sorted(n for n in self.objects if n.startswith(prefix)):
            obj = self.objects[name]
            yield ObjectInfo(name, len(obj.data), obj.generation, obj.updated)


async def _blocks(data: bytes, size: int = 4096) -> AsyncGenerator[bytes, None]:
    for i in range(0, len(data), size):
        await asyncio.sleep(0)
        yield data[i : i + size]
