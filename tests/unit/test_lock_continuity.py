"""Lock.held_here_last: True only when no one but this locker held the upload's lock since its last release.

A store trusts the state it remembers from its own last write when this is True, so the cases that
matter most are the ones that must answer False: another locker (instance, process, a process that
was killed) held the lock in between. Two FileLocker instances on one directory behave like two
worker processes (flock locks belong to open file descriptions); a few tests use a real process.
Each RedisLocker stands for one pytusd instance, against a real redis-server.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from pytusd.locks.base import Lock, Locker
from pytusd.locks.file import JOINED, LOCK_DIR, FileLocker
from pytusd.locks.memory import REMEMBER, MemoryLocker
from pytusd.locks.redis import RedisLocker
from tests.services.redis_server import RedisServer


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


def test_memory_remembers_nothing_unless_asked() -> None:
    """By default it cannot know whether other processes share the store."""

    async def main() -> None:
        locker = MemoryLocker()
        assert await cycle(locker) is False
        assert await cycle(locker) is False

    run(main())


def test_memory_first_take_is_false_then_true() -> None:
    async def main() -> None:
        locker = MemoryLocker(remember=REMEMBER)
        assert await cycle(locker) is False
        assert await cycle(locker) is True
        assert await cycle(locker, "other") is False, "another upload's release does not count"
        assert await cycle(locker) is True

    run(main())


def test_memory_forget_while_held_drops_it() -> None:
    async def main() -> None:
        locker = MemoryLocker(remember=REMEMBER)
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
        a, b = MemoryLocker(remember=REMEMBER), MemoryLocker(remember=REMEMBER)
        await cycle(a)
        assert await cycle(b) is False

    run(main())


# -- FileLocker: one locker ----------------------------------------------------------------------


def test_file_first_take_is_false_then_true(tmp_path: Path) -> None:
    async def main() -> None:
        locker = FileLocker(tmp_path)
        assert await cycle(locker) is False
        assert await cycle(locker) is True
        assert await cycle(locker, "other") is False
        assert await cycle(locker) is True
        await locker.close()

    run(main())


def test_file_forget_while_held_drops_it(tmp_path: Path) -> None:
    async def main() -> None:
        locker = FileLocker(tmp_path)
        await cycle(locker)
        lock = await take(locker)
        assert lock.held_here_last is True
        await locker.forget("up")
        await lock.release()
        assert await cycle(locker) is False, "a terminated upload's lock was remembered"
        assert await cycle(locker) is True
        await locker.close()

    run(main())


def test_file_closed_locker_starts_over(tmp_path: Path) -> None:
    async def main() -> None:
        locker = FileLocker(tmp_path)
        await cycle(locker)
        await locker.close()
        assert await cycle(locker) is False, "a closed locker vouched for what it held before"
        assert await cycle(locker) is True
        await locker.close()

    run(main())


def test_file_concurrent_first_takes_join_once(tmp_path: Path) -> None:
    """Requests of one locker that join at the same time must not leave a second membership behind
    (an extra open file description on .members would keep the locker from ever being alone)."""

    async def main() -> None:
        locker = FileLocker(tmp_path)
        (tmp_path / LOCK_DIR).mkdir()
        counter = os.open(tmp_path / LOCK_DIR / JOINED, os.O_RDWR | os.O_CREAT)
        fcntl.flock(counter, fcntl.LOCK_EX)  # the joiners wait for the counter together
        takes = [asyncio.create_task(cycle(locker, f"u{n}")) for n in range(5)]
        await asyncio.sleep(0.02)  # well inside the joiners' 100 tries of >= 1 ms
        os.close(counter)
        await asyncio.gather(*takes)
        await cycle(locker)
        assert await cycle(locker) is True
        await locker.close()

    run(main())


def test_file_data_file_mode_cannot_tell(tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / "up").write_bytes(b"x")
        locker = FileLocker(tmp_path, lock_target=lambda uid: str(tmp_path / uid))
        assert await cycle(locker) is False
        assert await cycle(locker) is False
        await locker.close()

    run(main())


# -- FileLocker: other lockers on the directory ------------------------------------------------------


def test_file_other_instance_held_it_in_between(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = FileLocker(tmp_path), FileLocker(tmp_path)
        await cycle(a)
        await cycle(b)
        assert await cycle(a) is False
        await a.close()
        await b.close()

    run(main())


def test_file_other_instance_that_held_it_and_left_is_still_seen(tmp_path: Path) -> None:
    """B joins after A's release, holds the lock, and is gone again before A takes it: the join
    counter moved, so A cannot be sure (being alone now proves nothing)."""

    async def main() -> None:
        a = FileLocker(tmp_path)
        await cycle(a)
        assert await cycle(a) is True  # released alone: A would vouch for it now
        b = FileLocker(tmp_path)
        await cycle(b)
        await b.close()
        assert await cycle(a) is False
        assert await cycle(a) is True, "alone again, and A released it last"
        await a.close()

    run(main())


def test_file_another_member_makes_every_answer_false(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = FileLocker(tmp_path), FileLocker(tmp_path)
        await cycle(a)
        await cycle(b, "elsewhere")  # B joined, never touching "up"
        assert await cycle(a) is False, "not alone: B could have taken the lock"
        # Released while B was alive: still no, even once B has gone.
        await b.close()
        assert await cycle(a) is False
        # Released alone this time.
        assert await cycle(a) is True
        await a.close()

    run(main())


def test_file_lock_directory_replaced_under_a_member(tmp_path: Path) -> None:
    async def main() -> None:
        a = FileLocker(tmp_path)
        await cycle(a)
        shutil.rmtree(tmp_path / LOCK_DIR)
        b = FileLocker(tmp_path)  # meets in new membership files A has never seen
        await cycle(b)
        await b.close()
        assert await cycle(a) is False
        await a.close()

    run(main())


def test_file_locker_that_could_not_join_still_moves_the_counter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        a, b = FileLocker(tmp_path), FileLocker(tmp_path)
        await cycle(a)
        assert await cycle(a) is True

        async def cannot_join() -> None:
            """Joining failed (an error, or the membership files stayed busy)."""

        monkeypatch.setattr(b, "_join", cannot_join)
        assert await cycle(b) is False
        assert await cycle(a) is False, "an unjoined locker held the lock unnoticed"
        await a.close()
        await b.close()

    run(main())


# -- FileLocker: real processes ------------------------------------------------------------------

_OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys, time
    from pytusd.locks.file import FileLocker

    async def main():
        locker = FileLocker(sys.argv[1])
        lock = await locker.acquire("up", lambda: None, 10.0)
        print("held", flush=True)
        if sys.argv[2] == "hang":
            time.sleep(3600)
        await lock.release()
        await locker.close()

    asyncio.run(main())
    """
)


def _other_process(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _OTHER_PROCESS, str(tmp_path), mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize("other", ["none", "releases", "is killed"])
def test_file_another_process_in_between(tmp_path: Path, other: str) -> None:
    async def main() -> bool:
        locker = FileLocker(tmp_path)
        await cycle(locker)
        await cycle(locker)  # released alone
        if other != "none":
            proc = _other_process(tmp_path, "release" if other == "releases" else "hang")
            try:
                if other == "is killed":
                    proc.send_signal(signal.SIGKILL)
                assert await asyncio.to_thread(proc.wait, 20) in (0, -signal.SIGKILL)
            finally:
                proc.kill()
                proc.wait()
        answer = await cycle(locker)
        await locker.close()
        return answer

    assert run(main()) is (other == "none")


def test_file_joiner_is_a_member_before_it_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """B is caught halfway through joining (between its two steps) while A releases. Joining takes
    LOCK_SH on .members before bumping the counter, so A is not alone then; the other order would
    leave B neither seen (no LOCK_SH yet) nor counted later (its bump already in A's record)."""
    from pytusd.locks import file as file_locks

    async def main() -> None:
        a, b = FileLocker(tmp_path), FileLocker(tmp_path)
        await cycle(a)
        real = file_locks._flock_soon
        steps = 0
        halfway, go_on = asyncio.Event(), asyncio.Event()

        async def pausing(fd: int, operation: int) -> None:
            nonlocal steps
            steps += 1
            if steps == 2:  # B's first step is done
                halfway.set()
                await go_on.wait()
            await real(fd, operation)

        monkeypatch.setattr(file_locks, "_flock_soon", pausing)
        joining = asyncio.create_task(cycle(b))
        await halfway.wait()
        await cycle(a)  # A releases while B is halfway
        go_on.set()
        await joining  # B holds and releases the lock
        await b.close()
        assert await cycle(a) is False
        await a.close()

    run(main())


# -- RedisLocker ------------------------------------------------------------------------------------


def test_redis_take_release_take(redis_server: RedisServer, redis_prefix: str) -> None:
    async def main() -> None:
        locker = RedisLocker(redis_server.url, prefix=redis_prefix)
        assert await cycle(locker) is False
        assert await cycle(locker) is True
        assert await cycle(locker, "other") is False
        assert await cycle(locker) is True
        await locker.close()

    run(main())


def test_redis_other_instance_held_it_in_between(redis_server: RedisServer, redis_prefix: str) -> None:
    async def main() -> None:
        a, b = RedisLocker(redis_server.url, prefix=redis_prefix), RedisLocker(redis_server.url, prefix=redis_prefix)
        await cycle(a)
        await cycle(a)
        assert await cycle(b) is False
        assert await cycle(a) is False
        assert await cycle(a) is True
        await a.close()
        await b.close()

    run(main())


def test_redis_other_instance_whose_lock_expired_in_between(redis_server: RedisServer, redis_prefix: str) -> None:
    """B takes the lock and dies holding it (it stops renewing, never releases): the key lapses."""

    async def main() -> None:
        a = RedisLocker(redis_server.url, prefix=redis_prefix, ttl=1.0)
        b = RedisLocker(redis_server.url, prefix=redis_prefix, ttl=1.0)
        await cycle(a)
        await cycle(a)
        await take(b)
        await b.close()  # no more renewals, no release
        lock = await a.acquire("up", lambda: None, 20.0)  # once the key has lapsed
        assert lock.held_here_last is False
        await lock.release()
        assert await cycle(a) is True
        await a.close()

    run(main())


def test_redis_forget(redis_server: RedisServer, redis_prefix: str) -> None:
    async def main() -> None:
        locker = RedisLocker(redis_server.url, prefix=redis_prefix)
        await cycle(locker)
        lock = await take(locker)
        assert lock.held_here_last is True
        await locker.forget("up")
        await lock.release()
        client = redis.asyncio.Redis.from_url(redis_server.url)
        assert await client.exists(f"{redis_prefix}last:up") == 0, "a terminated upload left its last token"
        await client.aclose()
        assert await cycle(locker) is False
        assert await cycle(locker) is True
        await locker.close()

    run(main())


def test_redis_key_set_back_by_a_renewal_leaves_no_last(redis_server: RedisServer, redis_prefix: str) -> None:
    """The key vanished while held (a partition, a failover) and the renewal set it back: someone
    may have held the lock meanwhile, so the next take cannot vouch for it."""

    async def main() -> None:
        # Renewals every second, given up after two unconfirmed: a slow machine does not lose it.
        locker = RedisLocker(redis_server.url, prefix=redis_prefix, ttl=3.0)
        client = redis.asyncio.Redis.from_url(redis_server.url)
        await cycle(locker)
        lock = await take(locker)
        key = f"{redis_prefix}lock:up"
        await client.delete(key)
        deadline = time.monotonic() + 10  # a bound for "did not hang"
        while await client.get(key) is None:  # the renewal takes it back
            assert time.monotonic() < deadline, "the holder did not take its lock back"
            await asyncio.sleep(0.05)
        await lock.release()
        assert await cycle(locker) is False
        assert await cycle(locker) is True
        await client.aclose()
        await locker.close()

    run(main())


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone, which it may flush."""
    with RedisServer() as server:
        yield server


def test_redis_flushed_in_between(own_redis: RedisServer) -> None:
    async def main() -> None:
        locker = RedisLocker(own_redis.url, prefix="t:")
        client = redis.asyncio.Redis.from_url(own_redis.url)
        await cycle(locker)
        await cycle(locker)
        await client.flushall()  # as a Redis that restarted empty
        assert await cycle(locker) is False
        assert await cycle(locker) is True
        await client.aclose()
        await locker.close()

    run(main())
