"""CPU per lock (take + release) of each locker, in-process, 16 requests at a time.

    python bench/lock_cost.py          # after scripts/test made .venv (needs redis-server)

What a lock costs each PATCH, without the HTTP around it: the figures behind the Redis lock
design in docs/decisions.md. Starts a private redis-server (tests/services/redis_server.py).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.services.redis_server import RedisServer  # noqa: E402

from pytusd.locks.base import Locker  # noqa: E402
from pytusd.locks.file import FileLocker  # noqa: E402
from pytusd.locks.redis import RedisLocker  # noqa: E402

PAIRS = 4000
CONCURRENCY = 16


async def _requests(locker: Locker, worker: int, n: int) -> None:
    for i in range(n):
        lock = await locker.acquire(f"u{worker}-{i}", lambda: None, 5.0)
        await lock.release()


async def cpu_per_pair(locker: Locker) -> float:
    """Microseconds of this process's CPU per take+release (the Redis server's own CPU not included)."""
    await _requests(locker, -1, 50)  # connections made, scripts loaded
    began = time.process_time()
    await asyncio.gather(*(_requests(locker, w, PAIRS // CONCURRENCY) for w in range(CONCURRENCY)))
    return (time.process_time() - began) / PAIRS * 1e6


async def main(redis_url: str) -> None:
    directory = tempfile.mkdtemp(prefix="pytusd-lockcost-")

    data = Path(directory, "data")
    data.mkdir()
    for worker in range(-1, CONCURRENCY):  # the uploads exist, as their data files do in the file store
        for i in range(max(50, PAIRS // CONCURRENCY)):
            (data / f"u{worker}-{i}").touch()

    def data_file(upload_id: str) -> str:
        return str(data / upload_id)

    lockers: dict[str, Locker] = {
        "redis": RedisLocker(redis_url),
        "file (lock files, as with S3)": FileLocker(directory),
        "file (data files, as with the file store)": FileLocker(directory, lock_target=data_file),
    }
    for _ in range(3):
        for name, locker in lockers.items():
            print(f"{name:45} {await cpu_per_pair(locker):7.1f} us CPU per take+release", flush=True)
    for locker in lockers.values():
        await locker.close()


if __name__ == "__main__":
    import uvloop

    with RedisServer() as server:
        uvloop.run(main(server.url))
