"""MemoryLocker, FileLocker and RedisLocker without a pytusd server: asyncio, real files, processes, Redis.

The contract (pytusd.locks.base): one holder per upload; a newcomer asks the holder to stop (its
callback is called) and gets the lock once the holder releases; if the holder does not release
within the timeout, LockTimeout. FileLocker adds the same across processes with ``flock`` and
``.stop`` files. Two FileLocker instances on one directory behave like two worker processes
(``flock`` locks belong to open file descriptions, so they conflict inside one process too);
a few tests use a real second process where only one will do.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pytusd.locks.base import Lock, Locker, LockTimeout
from pytusd.locks.file import LOCK_DIR, FileLocker
from pytusd.locks.memory import MemoryLocker
from pytusd.locks.redis import RedisLocker

#: Bound for "did not hang" in seconds; never a performance expectation.
BOUND = 5.0


def run(coro: Awaitable[Any]) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, 30)

    return asyncio.run(bounded())


class Holder:
    """A lock holder that records stop requests and lets go when asked (unless told to ignore)."""

    def __init__(self, *, ignore_stop: bool = False) -> None:
        self.stop_requests = 0
        self.ignore_stop = ignore_stop
        self.lock: Lock | None = None
        self.asked = asyncio.Event()

    def on_stop(self) -> None:
        self.stop_requests += 1
        self.asked.set()

    async def take(self, locker: Locker, upload_id: str, timeout: float = BOUND) -> Holder:
        self.lock = await locker.acquire(upload_id, self.on_stop, timeout)
        return self

    async def serve_until_asked(self) -> None:
        """Hold until asked to stop, then release (what a request with a body does)."""
        await asyncio.wait_for(self.asked.wait(), BOUND)
        assert self.lock is not None
        await self.lock.release()


NewLocker = Callable[..., FileLocker]


def data_files(root: Path) -> Callable[[str], str]:
    """A lock target like the file store's: each upload's own (data) file, which exists."""

    def target(upload_id: str) -> str:
        path = root / "data" / upload_id.replace("/", "_")
        path.parent.mkdir(exist_ok=True)
        path.touch()
        return str(path)

    return target


@pytest.fixture(params=["lock-files", "data-files"])
def new_locker(request: pytest.FixtureRequest, tmp_path: Path) -> NewLocker:
    """FileLocker instances ("worker processes") on one directory, in either locking mode."""
    if request.param == "lock-files":
        return FileLocker
    target = data_files(tmp_path)
    return lambda directory, **kw: FileLocker(directory, lock_target=target, **kw)


@pytest.fixture(params=["memory", "file", "file-data", "redis"])
def make_locker(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Locker]:
    """A factory of lockers sharing one state (for FileLocker: one directory, one instance; for
    RedisLocker: one instance on the session's redis-server)."""
    if request.param == "memory":
        locker: Locker = MemoryLocker()
    elif request.param == "file":
        locker = FileLocker(tmp_path)
    elif request.param == "file-data":
        locker = FileLocker(tmp_path, lock_target=data_files(tmp_path))
    else:
        server = request.getfixturevalue("redis_server")
        locker = RedisLocker(server.url, prefix=request.getfixturevalue("redis_prefix"))
    return lambda: locker


# -- the contract, both lockers -------------------------------------------------------------------


def test_acquire_release_acquire(make_locker: Callable[[], Locker]) -> None:
    async def main() -> None:
        locker = make_locker()
        lock = await locker.acquire("a", lambda: None, 0.0)
        await lock.release()
        lock = await locker.acquire("a", lambda: None, 0.0)  # free again, immediately
        await lock.release()
        await locker.close()

    run(main())


def test_different_uploads_do_not_contend(make_locker: Callable[[], Locker]) -> None:
    async def main() -> None:
        locker = make_locker()
        first = await Holder().take(locker, "a")
        second = await Holder().take(locker, "b", timeout=0.0)
        nested = await Holder().take(locker, "a/b", timeout=0.0)
        assert first.stop_requests == second.stop_requests == nested.stop_requests == 0
        for holder in (first, second, nested):
            assert holder.lock is not None
            await holder.lock.release()
        await locker.close()

    run(main())


def test_newcomer_asks_the_holder_to_stop_and_gets_the_lock_when_it_lets_go(make_locker: Callable[[], Locker]) -> None:
    async def main() -> None:
        locker = make_locker()
        holder = await Holder().take(locker, "up")
        serving = asyncio.create_task(holder.serve_until_asked())
        began = time.monotonic()
        newcomer = await Holder().take(locker, "up", timeout=20.0)
        assert time.monotonic() - began < BOUND, "the newcomer waited for the timeout instead of stopping the holder"
        assert holder.stop_requests >= 1
        assert serving.done(), "the newcomer got the lock before the holder released it"
        await serving
        assert newcomer.stop_requests == 0
        assert newcomer.lock is not None
        await newcomer.lock.release()
        await locker.close()

    run(main())


def test_holder_that_ignores_the_stop_request_makes_the_newcomer_time_out(make_locker: Callable[[], Locker]) -> None:
    async def main() -> None:
        locker = make_locker()
        holder = await Holder(ignore_stop=True).take(locker, "up")
        began = time.monotonic()
        with pytest.raises(LockTimeout):
            await locker.acquire("up", lambda: None, 0.3)
        assert time.monotonic() - began < BOUND
        assert holder.stop_requests >= 1, "the holder was never asked to stop"
        with pytest.raises(LockTimeout):  # still held
            await locker.acquire("up", lambda: None, 0.0)
        assert holder.lock is not None
        await holder.lock.release()
        lock = await locker.acquire("up", lambda: None, 0.0)
        await lock.release()
        await locker.close()

    run(main())


def test_timeout_zero_fails_at_once_when_held(make_locker: Callable[[], Locker]) -> None:
    async def main() -> None:
        locker = make_locker()
        holder = await Holder(ignore_stop=True).take(locker, "up")
        began = time.monotonic()
        with pytest.raises(LockTimeout):
            await locker.acquire("up", lambda: None, 0.0)
        assert time.monotonic() - began < BOUND
        assert holder.lock is not None
        await holder.lock.release()
        await locker.close()

    run(main())


def test_cancelled_waiter_leaves_nothing_behind(make_locker: Callable[[], Locker]) -> None:
    async def main() -> None:
        locker = make_locker()
        holder = await Holder(ignore_stop=True).take(locker, "up")
        waiter = asyncio.create_task(locker.acquire("up", lambda: None, 20.0))
        await asyncio.sleep(0.1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert holder.lock is not None
        await holder.lock.release()
        lock = await locker.acquire("up", lambda: None, 0.0)
        await lock.release()
        await locker.close()

    run(main())


def test_one_holder_at_a_time_among_many_contenders(make_locker: Callable[[], Locker]) -> None:
    """Twelve requests for one upload, each stopping the previous: never two inside at once."""

    async def main() -> None:
        locker = make_locker()
        inside = 0
        most = 0
        served = 0

        async def request(n: int) -> None:
            nonlocal inside, most, served
            await asyncio.sleep(n * 0.01)
            holder = await Holder().take(locker, "up", timeout=20.0)
            inside += 1
            most = max(most, inside)
            try:
                for _ in range(5):  # "receive a body" until done or asked to stop
                    if holder.asked.is_set():
                        break
                    await asyncio.sleep(0.01)
            finally:
                inside -= 1
                served += 1
                assert holder.lock is not None
                await holder.lock.release()

        await asyncio.gather(*(request(n) for n in range(12)))
        assert most == 1
        assert served == 12
        await locker.close()

    run(main())


# -- MemoryLocker --------------------------------------------------------------------------------


def test_memory_locker_reports_what_it_holds() -> None:
    async def main() -> None:
        locker = MemoryLocker()
        assert not locker.is_held("a")
        lock = await locker.acquire("a", lambda: None, 0.0)
        assert locker.is_held("a")
        await lock.release()
        assert not locker.is_held("a")

    run(main())


# -- FileLocker: two "processes" (instances) on one directory --------------------------------------


def _stop_file(tmp_path: Path, upload_id: str) -> Path:
    return tmp_path / LOCK_DIR / f"{upload_id}.stop"


def test_file_locker_stop_request_crosses_instances(tmp_path: Path, new_locker: NewLocker) -> None:
    async def main() -> None:
        worker_a, worker_b = new_locker(tmp_path), new_locker(tmp_path)
        holder = await Holder().take(worker_a, "up")
        serving = asyncio.create_task(holder.serve_until_asked())
        began = time.monotonic()
        newcomer = await Holder().take(worker_b, "up", timeout=20.0)
        assert time.monotonic() - began < BOUND
        assert serving.done() and holder.stop_requests >= 1
        assert not _stop_file(tmp_path, "up").exists(), "the stop file outlived the stop it asked for"
        assert newcomer.lock is not None
        await newcomer.lock.release()
        await worker_a.close()
        await worker_b.close()

    run(main())


def test_file_locker_times_out_against_an_instance_that_ignores_stop(tmp_path: Path, new_locker: NewLocker) -> None:
    async def main() -> None:
        worker_a, worker_b = new_locker(tmp_path), new_locker(tmp_path)
        holder = await Holder(ignore_stop=True).take(worker_a, "up")
        with pytest.raises(LockTimeout):
            await worker_b.acquire("up", lambda: None, 0.5)
        assert holder.stop_requests >= 1, "the stop file was not seen by the holder's process"
        assert not _stop_file(tmp_path, "up").exists(), "a waiter that gave up must withdraw its stop file"
        with pytest.raises(LockTimeout):
            await worker_b.acquire("up", lambda: None, 0.0)
        assert holder.lock is not None
        await holder.lock.release()
        lock = await worker_b.acquire("up", lambda: None, 0.0)
        await lock.release()
        await worker_a.close()
        await worker_b.close()

    run(main())


def test_file_locker_mutual_exclusion_across_instances(tmp_path: Path, new_locker: NewLocker) -> None:
    """Requests spread over three "workers": never two holders of one upload at once."""

    async def main() -> None:
        workers = [new_locker(tmp_path, poll_interval=0.005) for _ in range(3)]
        inside = most = served = 0

        async def request(n: int) -> None:
            nonlocal inside, most, served
            await asyncio.sleep(n * 0.02)
            holder = await Holder().take(workers[n % 3], "up", timeout=20.0)
            inside += 1
            most = max(most, inside)
            try:
                for _ in range(10):
                    if holder.asked.is_set():
                        break
                    await asyncio.sleep(0.01)
            finally:
                inside -= 1
                served += 1
                assert holder.lock is not None
                await holder.lock.release()

        await asyncio.gather(*(request(n) for n in range(12)))
        assert (most, served) == (1, 12)
        for worker in workers:
            await worker.close()

    run(main())


def test_stale_stop_file_does_not_stop_a_new_holder(tmp_path: Path, new_locker: NewLocker) -> None:
    async def main() -> None:
        stop = _stop_file(tmp_path, "up")
        stop.parent.mkdir(parents=True)
        stop.touch()  # left behind by a process killed while it waited
        locker = new_locker(tmp_path)
        holder = await Holder().take(locker, "up")
        await asyncio.sleep(0.5)  # several polls of the stop file
        assert holder.stop_requests == 0
        assert not stop.exists()
        assert holder.lock is not None
        await holder.lock.release()
        await locker.close()

    run(main())


def test_release_removes_the_stop_file_and_stops_watching(tmp_path: Path, new_locker: NewLocker) -> None:
    async def main() -> None:
        worker_a, worker_b = new_locker(tmp_path), new_locker(tmp_path)
        holder = await Holder(ignore_stop=True).take(worker_a, "up")
        waiter = asyncio.create_task(worker_b.acquire("up", lambda: None, 20.0))
        await asyncio.wait_for(holder.asked.wait(), BOUND)
        assert holder.lock is not None
        await holder.lock.release()
        lock = await asyncio.wait_for(waiter, BOUND)
        asked = holder.stop_requests
        await asyncio.sleep(0.3)
        assert holder.stop_requests == asked, "a released lock's holder is still called"
        await lock.release()
        assert not _stop_file(tmp_path, "up").exists()
        await worker_a.close()
        await worker_b.close()

    run(main())


def test_lock_files_do_not_pile_up(tmp_path: Path) -> None:
    """Each lock file goes with its release: a server that served a million uploads keeps none."""

    async def main() -> None:
        locker = FileLocker(tmp_path)
        for n in range(20):
            lock = await locker.acquire(f"u{n}", lambda: None, 0.0)
            assert (tmp_path / LOCK_DIR / f"u{n}.lock").exists(), "the held lock has no lock file"
            await lock.release()
        # Only the two fixed membership files of held_here_last stay (pytusd.locks.file: MEMBERS, JOINED).
        assert {p.name for p in (tmp_path / LOCK_DIR).iterdir()} <= {".members", ".joined"}
        await locker.close()

    run(main())


def test_data_file_mode_locks_the_upload_file_and_creates_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        data = tmp_path / "up"
        data.write_bytes(b"x")
        locker = FileLocker(tmp_path, lock_target=lambda uid: str(tmp_path / uid))
        lock = await locker.acquire("up", lambda: None, 0.0)
        fd = os.open(data, os.O_RDONLY)
        try:  # the kernel sees the data file itself locked
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            await lock.release()
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        assert not (tmp_path / LOCK_DIR).exists(), "a lock in data-file mode created files"
        await locker.close()

    run(main())


def test_data_file_mode_without_the_file_still_excludes_within_the_process(tmp_path: Path) -> None:
    """No data file: the upload does not exist and the request will answer 404, but two requests in
    one process still never hold it at once."""

    async def main() -> None:
        locker = FileLocker(tmp_path, lock_target=lambda uid: str(tmp_path / uid))
        holder = await Holder(ignore_stop=True).take(locker, "missing")
        with pytest.raises(LockTimeout):
            await locker.acquire("missing", lambda: None, 0.1)
        assert holder.stop_requests >= 1 and holder.lock is not None
        await holder.lock.release()
        lock = await locker.acquire("missing", lambda: None, 0.0)
        await lock.release()
        await locker.close()

    run(main())


def test_waiter_relocks_a_file_replaced_while_it_waited(tmp_path: Path) -> None:
    """A final upload's data is renamed into place under its lock: a waiter that then wins the old,
    replaced file must lock the new one, or a third request could lock it too."""

    async def main() -> None:
        data = tmp_path / "final"
        data.write_bytes(b"")
        target = lambda uid: str(tmp_path / uid)  # noqa: E731
        worker_a, worker_b, worker_c = (FileLocker(tmp_path, lock_target=target) for _ in range(3))
        holder = await Holder(ignore_stop=True).take(worker_a, "final")
        waiter = asyncio.create_task(worker_b.acquire("final", lambda: None, 20.0))
        await asyncio.wait_for(holder.asked.wait(), BOUND)
        (tmp_path / "staged").write_bytes(b"joined")
        os.replace(tmp_path / "staged", data)
        assert holder.lock is not None
        await holder.lock.release()
        lock = await asyncio.wait_for(waiter, BOUND)
        with pytest.raises(LockTimeout):  # the new file is the one held now
            await worker_c.acquire("final", lambda: None, 0.2)
        await lock.release()
        for worker in (worker_a, worker_b, worker_c):
            await worker.close()

    run(main())


def test_ids_with_slashes_and_percents_get_distinct_flat_lock_files(tmp_path: Path) -> None:
    async def main() -> None:
        worker_a, worker_b = FileLocker(tmp_path), FileLocker(tmp_path)
        locks = [await worker_a.acquire(uid, lambda: None, 0.0) for uid in ("a/b", "a%2Fb", "a%252Fb", "a")]
        # The same IDs from another "process" are all taken: each maps to its own lock file.
        for uid in ("a/b", "a%2Fb", "a%252Fb", "a"):
            with pytest.raises(LockTimeout):
                await worker_b.acquire(uid, lambda: None, 0.0)
        entries = list((tmp_path / LOCK_DIR).iterdir())
        assert all(entry.is_file() for entry in entries), "a lock file was nested in a subdirectory"
        assert len({e.name for e in entries if e.name.endswith(".lock")}) == 4
        for lock in locks:
            await lock.release()
        await worker_a.close()
        await worker_b.close()

    run(main())


def test_long_nested_ids_get_lock_files_within_the_name_limit(tmp_path: Path) -> None:
    """'/' becomes '%2F' in lock names: a 255-character ID of short segments would be a 700-byte
    name (ENAMETOOLONG, a 500); such names are hashed, and two of them still lock apart."""
    long_a, long_b = "a/" * 127 + "b", "a/" * 127 + "c"

    async def main() -> None:
        worker_a, worker_b = FileLocker(tmp_path), FileLocker(tmp_path)
        locks = [await worker_a.acquire(uid, lambda: None, 0.0) for uid in (long_a, long_b)]
        for uid in (long_a, long_b):
            with pytest.raises(LockTimeout):
                await worker_b.acquire(uid, lambda: None, 0.0)
        names = [e.name for e in (tmp_path / LOCK_DIR).iterdir() if e.name.endswith(".lock")]
        assert len(names) == 2 and all(len(name) <= 255 for name in names)
        for lock in locks:
            await lock.release()
        await worker_a.close()
        await worker_b.close()

    run(main())


@pytest.mark.parametrize("bad_id", ["", "..", "../x", "a/../../x", "/etc/passwd", "a//b", "a/", "x\x00"])
def test_file_locker_refuses_ids_that_would_escape(tmp_path: Path, bad_id: str) -> None:
    async def main() -> None:
        locker = FileLocker(tmp_path / "uploads")
        with pytest.raises(ValueError):
            await locker.acquire(bad_id, lambda: None, 0.0)
        # Nothing stays held, not even in the in-process layer.
        with pytest.raises(ValueError):
            await locker.acquire(bad_id, lambda: None, 0.0)
        await locker.close()

    run(main())
    outside = [p for p in tmp_path.rglob("*") if not str(p).startswith(str(tmp_path / "uploads"))]
    assert outside == []


# -- FileLocker: real processes -------------------------------------------------------------------

_HOLDER_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pytusd.locks.file import FileLocker

    async def main():
        locker = FileLocker(sys.argv[1])
        asked = asyncio.Event()
        lock = await locker.acquire("up", asked.set, 10.0)
        print("held", flush=True)
        if sys.argv[2] == "ignore":
            await asyncio.sleep(3600)
        await asyncio.wait_for(asked.wait(), 30)
        await lock.release()
        print("released", flush=True)
        await locker.close()

    asyncio.run(main())
    """
)


def _start_holder(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER_SCRIPT, str(tmp_path), mode], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_holder_in_another_process_is_stopped_and_releases(tmp_path: Path) -> None:
    proc = _start_holder(tmp_path, "obey")
    try:

        async def main() -> float:
            locker = FileLocker(tmp_path)
            began = time.monotonic()
            lock = await locker.acquire("up", lambda: None, 20.0)
            took = time.monotonic() - began
            await lock.release()
            await locker.close()
            return took

        assert run(main()) < BOUND
        assert proc.wait(BOUND) == 0
        assert proc.stdout is not None and proc.stdout.read().strip() == "released"
    finally:
        proc.kill()
        proc.wait()


def test_lock_dies_with_the_process_holding_it(tmp_path: Path) -> None:
    proc = _start_holder(tmp_path, "ignore")
    try:

        async def main() -> None:
            locker = FileLocker(tmp_path)
            with pytest.raises(LockTimeout):
                await locker.acquire("up", lambda: None, 0.3)
            os.kill(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
            lock = await locker.acquire("up", lambda: None, 0.0)  # the kernel dropped the flock
            await lock.release()
            await locker.close()

        run(main())
    finally:
        proc.kill()
        proc.wait()
