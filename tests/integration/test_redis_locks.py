"""RedisLocker against a real redis-server: several instances, a killed holder, Redis going away.

Each RedisLocker here stands for one pytusd instance (one process); a test that needs a process to
die uses a real second process. Bounds are for "did not hang", never performance.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from tests.services.redis_server import RedisServer

from pytusd.locks.base import LockTimeout, LockUnavailable
from pytusd.locks.redis import RedisLocker

ROOT = Path(__file__).resolve().parents[2]
BOUND = 10.0


def run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(bounded())


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone, which it may kill and restart."""
    with RedisServer() as server:
        yield server


def lockers(url: str, prefix: str, n: int, **kwargs: Any) -> list[RedisLocker]:
    return [RedisLocker(url, prefix=prefix, **kwargs) for _ in range(n)]


async def close_all(*all_lockers: RedisLocker) -> None:
    for locker in all_lockers:
        await locker.close()


def test_a_stop_request_reaches_the_holder_on_another_instance(redis_server: RedisServer, redis_prefix: str) -> None:
    async def main() -> None:
        a, b = lockers(redis_server.url, redis_prefix, 2)
        asked = asyncio.Event()
        held = await a.acquire("up", asked.set, 1.0)

        async def let_go_when_asked() -> None:
            await asyncio.wait_for(asked.wait(), BOUND)
            await held.release()

        holder = asyncio.create_task(let_go_when_asked())
        began = time.monotonic()
        newcomer = await b.acquire("up", lambda: None, 20.0)
        assert time.monotonic() - began < BOUND, "waited for the timeout instead of stopping the holder"
        assert holder.done(), "the newcomer got the lock while the holder still had it"
        await newcomer.release()
        await close_all(a, b)

    run(main())


def test_waiting_without_asking_does_not_stop_the_holder(redis_server: RedisServer, redis_prefix: str) -> None:
    async def main() -> None:
        a, b = lockers(redis_server.url, redis_prefix, 2)
        asked = asyncio.Event()
        held = await a.acquire("up", asked.set, 1.0)
        with pytest.raises(LockTimeout):
            await b.acquire("up", lambda: None, 0.7, stop_holder=False)
        assert not asked.is_set()
        await held.release()
        await close_all(a, b)

    run(main())


def test_one_holder_at_a_time_across_three_instances(redis_server: RedisServer, redis_prefix: str) -> None:
    async def main() -> None:
        instances = lockers(redis_server.url, redis_prefix, 3)
        inside = most = served = 0

        async def request(n: int) -> None:
            nonlocal inside, most, served
            asked = asyncio.Event()
            await asyncio.sleep(n * 0.01)
            lock = await instances[n % 3].acquire("up", asked.set, 30.0)
            inside += 1
            most = max(most, inside)
            try:
                for _ in range(5):  # "receive a body" until done or asked to stop
                    if asked.is_set():
                        break
                    await asyncio.sleep(0.01)
            finally:
                inside -= 1
                served += 1
                await lock.release()

        await asyncio.gather(*(request(n) for n in range(18)))
        assert (most, served) == (1, 18)
        await close_all(*instances)

    run(main())


def test_a_lock_is_renewed_past_its_ttl_while_held(redis_server: RedisServer, redis_prefix: str) -> None:
    async def main() -> None:
        a, b = lockers(redis_server.url, redis_prefix, 2, ttl=1.0)
        held = await a.acquire("up", lambda: None, 1.0)
        await asyncio.sleep(2.5)  # two and a half TTLs
        with pytest.raises(LockTimeout):
            await b.acquire("up", lambda: None, 0.0, stop_holder=False)
        await held.release()
        await (await b.acquire("up", lambda: None, 0.0)).release()
        await close_all(a, b)

    run(main())


HOLD_AND_WAIT = textwrap.dedent(
    """
    import asyncio, sys
    from pytusd.locks.redis import RedisLocker

    async def main():
        locker = RedisLocker(sys.argv[1], prefix=sys.argv[2], ttl=float(sys.argv[3]))
        await locker.acquire("up", lambda: None, 5.0)  # ignores stop requests
        print("held", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_a_killed_instance_blocks_its_uploads_for_at_most_the_ttl(redis_server: RedisServer, redis_prefix: str) -> None:
    ttl = 2.0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    cmd = [sys.executable, "-c", HOLD_AND_WAIT, redis_server.url, redis_prefix, str(ttl)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
        proc.kill()
        proc.wait()

        async def main() -> float:
            (b,) = lockers(redis_server.url, redis_prefix, 1)
            with pytest.raises(LockTimeout):  # the dead holder's key is still there
                await b.acquire("up", lambda: None, 0.0)
            began = time.monotonic()
            lock = await b.acquire("up", lambda: None, 20.0)
            waited = time.monotonic() - began
            await lock.release()
            await b.close()
            return waited

        waited = run(main())
        assert waited <= ttl + 2.0, f"blocked {waited:.1f} s by a dead instance's lock (TTL {ttl} s)"
    finally:
        proc.kill()
        proc.wait()


def test_redis_down_gives_lock_unavailable_and_work_resumes_when_it_is_back(own_redis: RedisServer) -> None:
    async def main() -> None:
        (a,) = lockers(own_redis.url, "t:", 1)
        await (await a.acquire("up", lambda: None, 1.0)).release()
        own_redis.kill()
        began = time.monotonic()
        with pytest.raises(LockUnavailable):
            await a.acquire("up", lambda: None, 5.0)
        assert time.monotonic() - began < BOUND
        own_redis.restart()
        lock = await a.acquire("up", lambda: None, 1.0)  # the same locker, no restart of pytusd
        await lock.release()
        await a.close()

    run(main())


def test_release_while_redis_is_down_does_not_fail_the_request(own_redis: RedisServer) -> None:
    async def main() -> None:
        a, b = lockers(own_redis.url, "t:", 2)
        held = await a.acquire("up", lambda: None, 1.0)
        own_redis.kill()
        await held.release()  # logged, not raised: the key lapses by itself
        own_redis.restart()
        await (await b.acquire("up", lambda: None, 1.0)).release()
        await close_all(a, b)

    run(main())


def test_a_holder_takes_its_lock_back_after_redis_restarts_empty(own_redis: RedisServer) -> None:
    async def main() -> None:
        a, b = lockers(own_redis.url, "t:", 2)
        lost = asyncio.Event()
        held = await a.acquire("up", lambda: None, 1.0, on_lost=lost.set)
        own_redis.restart()  # every key is gone
        client = redis.asyncio.Redis.from_url(own_redis.url)
        deadline = time.monotonic() + BOUND
        while await client.get("t:lock:up") is None:  # the event loop must run: the renewal retakes it
            assert time.monotonic() < deadline, "the holder did not take its lock back"
            await asyncio.sleep(0.05)
        await client.aclose()
        with pytest.raises(LockTimeout):
            await b.acquire("up", lambda: None, 0.0, stop_holder=False)
        assert not lost.is_set()
        await held.release()
        await (await b.acquire("up", lambda: None, 1.0)).release()
        await close_all(a, b)

    run(main())


def test_a_holder_whose_lock_was_taken_is_told_at_once(redis_server: RedisServer, redis_prefix: str) -> None:
    async def main() -> None:
        (a,) = lockers(redis_server.url, redis_prefix, 1)
        lost = asyncio.Event()
        held = await a.acquire("up", lambda: None, 1.0, on_lost=lost.set)
        client = redis.Redis.from_url(redis_server.url)
        client.set(f"{redis_prefix}lock:up", "someone-else")  # as if it lapsed and another took it
        client.close()
        await asyncio.wait_for(lost.wait(), BOUND)
        await held.release()  # must not remove the other holder's key
        check = redis.Redis.from_url(redis_server.url)
        assert check.get(f"{redis_prefix}lock:up") == b"someone-else"
        check.close()
        await a.close()

    run(main())


def test_one_instance_leads_shared_periodic_work(redis_server: RedisServer, redis_prefix: str) -> None:
    async def main() -> None:
        a, b, c = lockers(redis_server.url, redis_prefix, 3)
        leads = [await x.lead("sweep", 1.0) for x in (a, b, c)]
        assert leads == [True, False, False]
        assert await a.lead("sweep", 1.0)  # the leader keeps its turn
        await asyncio.sleep(1.2)  # it lapses if the leader stops renewing
        assert await b.lead("sweep", 1.0)
        assert not await a.lead("sweep", 1.0)
        await close_all(a, b, c)

    run(main())


@pytest.mark.parametrize("bad_id", ["", "../x", "a/../b", ".pytusd-x", "x.info"])
def test_invalid_ids_are_refused(redis_server: RedisServer, redis_prefix: str, bad_id: str) -> None:
    async def main() -> None:
        (a,) = lockers(redis_server.url, redis_prefix, 1)
        with pytest.raises(ValueError):
            await a.acquire(bad_id, lambda: None, 0.0)
        await a.close()

    run(main())


def test_a_redis_that_accepts_but_never_answers_gives_lock_unavailable_not_a_hang() -> None:
    """A blackholed Redis (a socket that takes connections and says nothing): bounded by the timeouts."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # connections complete in the kernel's backlog; nobody ever reads them
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"

        async def main() -> None:
            locker = RedisLocker(url, prefix="t:", connect_timeout=0.2, command_timeout=0.2)
            began = time.monotonic()
            with pytest.raises(LockUnavailable):
                await locker.acquire("up", lambda: None, 30.0)
            assert time.monotonic() - began < BOUND
            await locker.close()

        run(main())


def test_a_cancelled_acquire_leaves_no_lock_behind(redis_server: RedisServer, redis_prefix: str) -> None:
    """Cancelled at every point of taking the lock (before, while and after its SET is sent): nothing stays locked."""

    async def main() -> None:
        a, b = lockers(redis_server.url, redis_prefix, 2)
        for n in range(24):
            task = asyncio.create_task(a.acquire(f"c{n}", lambda: None, 5.0))
            for _ in range(n % 6):  # let it get further each time
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                lock = await task
                await lock.release()  # it finished before the cancellation: release as its request would
        for n in range(24):
            # Within a second (the undo runs in the background), never the 10 s TTL.
            await (await b.acquire(f"c{n}", lambda: None, 1.0)).release()
        await close_all(a, b)

    run(main())


def test_many_concurrent_locks_share_round_trips_and_each_gets_its_own_answer(
    redis_server: RedisServer, redis_prefix: str
) -> None:
    async def main() -> None:
        a, b = lockers(redis_server.url, redis_prefix, 2)
        locks = await asyncio.gather(*(a.acquire(f"m{n}", lambda: None, 1.0) for n in range(200)))
        # Every one is held: the other instance gets none of them...
        for n in (0, 57, 199):
            with pytest.raises(LockTimeout):
                await b.acquire(f"m{n}", lambda: None, 0.0, stop_holder=False)
        await asyncio.gather(*(lock.release() for lock in locks))
        # ...and every one is free again.
        again = await asyncio.gather(*(b.acquire(f"m{n}", lambda: None, 0.0) for n in range(200)))
        await asyncio.gather(*(lock.release() for lock in again))
        await close_all(a, b)

    run(main())


CYCLES = textwrap.dedent(
    """
    import asyncio, contextlib, sys
    from pytusd.locks.base import LockTimeout
    from pytusd.locks.redis import RedisLocker

    async def cycle(n, close):
        locker = RedisLocker(sys.argv[1], prefix=f"{sys.argv[2]}{n}:")
        held = await locker.acquire("up", lambda: None, 5.0)
        with contextlib.suppress(LockTimeout):
            await locker.acquire("up", lambda: None, 0.0)
        await held.release()
        if close:
            await locker.close()

    for n in range(100):
        asyncio.run(cycle(n, close=n % 2 == 0))  # closed, or left to asyncio.run's own cleanup
    print("done", flush=True)
    """
)


def test_the_locker_always_lets_its_event_loop_end(redis_server: RedisServer, redis_prefix: str) -> None:
    """redis-py may mistake a cancellation for a read timeout; the listener once swallowed it and
    kept the event loop (a worker's shutdown, half the runs of a test) from ever ending."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, "-c", CYCLES, redis_server.url, redis_prefix],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.stdout.strip() == "done", done.stderr[-2000:]


def test_a_renewal_racing_a_release_leaves_no_lock_behind(redis_server: RedisServer, redis_prefix: str) -> None:
    """A renewal sent just before a release lands after it and sets the key again: it must be undone at once,
    not left to block the upload for a TTL (10 s here)."""

    async def main() -> None:
        (a,) = lockers(redis_server.url, redis_prefix, 1)
        client = redis.asyncio.Redis.from_url(redis_server.url)
        deadline = time.monotonic() + 3.5  # three renewal ticks or more
        n = 0
        while time.monotonic() < deadline:
            locks = await asyncio.gather(*(a.acquire(f"r{n}-{i}", lambda: None, 1.0) for i in range(40)))
            await asyncio.sleep(0.02)
            await asyncio.gather(*(lock.release() for lock in locks))
            n += 1
        began = time.monotonic()
        while await client.keys(f"{redis_prefix}lock:*"):
            assert time.monotonic() - began < 3.0, "a released lock was set again and left for its TTL"
            await asyncio.sleep(0.05)
        await client.aclose()
        await a.close()

    run(main())


def test_taking_a_lock_again_with_its_own_token_succeeds(redis_server: RedisServer, redis_prefix: str) -> None:
    """A take retried after its first reply was lost finds its own token: it holds the lock, it does not wait."""

    async def main() -> None:
        (a,) = lockers(redis_server.url, redis_prefix, 1)
        lock = await a.acquire("x", lambda: None, 1.0)
        assert await a._claim_or_undo(a.key("lock", "x"), lock.token, "x")  # type: ignore[attr-defined]
        assert not await a._claim_or_undo(a.key("lock", "x"), "someone-else", "x")
        await lock.release()
        await a.close()

    run(main())
