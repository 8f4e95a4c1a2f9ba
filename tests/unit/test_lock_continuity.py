"""Lock.held_here_last: True only when no one but this locker held the upload's lock since its last release.

A store trusts the state it remembers from its own last write when this is True, so the cases that
matter most are the ones that must answer False: another locker (instance, process, a process that
was killed) held the lock in between. Two FileLocker instances on one directory behave like two
worker processes (flock locks belong to open file descriptions); a few tests use a real process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from pytusd.locks.base import Lock, Locker
from pytusd.locks.memory import MemoryLocker


def run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(bounded())


async def take(locker: Locker, upload_id: str = "up") -> Lock:
    return await locker.acquire(upload_id, lambda: None, 5.0)


async def cycle(locker: Locker, upload_id: str = "up") -> bool:
    """Take and release the lock; was it held here last?"""
    lock = await take(locker, upload_id)
    await lock.release()
    return lock.held_here_last


# -- the contract's default ------------------------------------------------------------------------


def test_a_lock_that_cannot_tell_answers_false() -> None:
    class Bare(Lock):
        async def release(self) -> None:
            """Nothing to release."""

    assert Bare().held_here_last is False


# -- MemoryLocker ------------------------------------------------------------------------------------


def test_memory_first_take_is_false_then_true() -> None:
    async def main() -> None:
        locker = MemoryLocker()
        assert await cycle(locker) is False
        assert await cycle(locker) is True
        assert await cycle(locker, "other") is False, "another upload's release does not count"
        assert await cycle(locker) is True

    run(main())


def test_memory_forget_while_held_drops_it() -> None:
    async def main() -> None:
        locker = MemoryLocker()
        await cycle(locker)
        lock = await take(locker)
        assert lock.held_here_last is True
        await locker.forget("up")  # terminated while held, as the upload service does
        await lock.release()
        assert await cycle(locker) is False, "a terminated upload's lock was remembered"
        await locker.forget("up")  # not held: dropped all the same
        assert await cycle(locker) is False
        assert await cycle(locker) is True

    run(main())


def test_memory_remembers_a_bounded_number_of_uploads() -> None:
    async def main() -> None:
        locker = MemoryLocker(remember=2)
        for upload_id in ("a", "b", "c"):
            await cycle(locker, upload_id)
        assert await cycle(locker, "a") is False, "the least recently released was kept beyond the bound"
        assert await cycle(locker, "c") is True

    run(main())


def test_memory_another_locker_is_another_process() -> None:
    async def main() -> None:
        a, b = MemoryLocker(), MemoryLocker()
        await cycle(a)
        assert await cycle(b) is False

    run(main())
