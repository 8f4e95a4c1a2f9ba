"""The rule by which a lock holder lets a newer request have the upload (pytusd.handover).

Bodies here report how long they have been quiet from a number the test sets, and the event loop's
timers are real but short, so each outcome is asserted exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from pytusd.handover import STOPPED_BY_REQUEST, STOPPED_LOCK_LOST, Handover, lock_for
from pytusd.locks.memory import MemoryLocker

GRACE = 0.05


class QuietBody:
    """A body whose quietness the test decides; records stops."""

    def __init__(self, quiet: float = 0.0) -> None:
        self.quiet = quiet
        self.stopped: str | None = None
        self.complete = False
        self.disconnected = False
        self.can_read_trailers = False
        self.can_write_into = False
        self.stops = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        raise AssertionError("not read in these tests")

    def stop(self, reason: str) -> None:
        self.stops += 1
        if self.stopped is None:
            self.stopped = reason

    def trailers(self) -> Mapping[str, str] | None:
        return None

    async def write_into(self, fd: int) -> int:
        raise AssertionError("not read in these tests")

    def quiet_for(self) -> float:
        return self.quiet


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_quiet_holder_is_stopped_at_once() -> None:
    async def scenario() -> None:
        body = QuietBody(quiet=GRACE)
        Handover(body, GRACE).request_stop()
        assert body.stopped == STOPPED_BY_REQUEST

    run(scenario)


def test_a_receiving_holder_keeps_the_lock_until_it_goes_quiet() -> None:
    async def scenario() -> None:
        body = QuietBody(quiet=0.0)
        handover = Handover(body, GRACE)
        handover.request_stop()
        assert body.stopped is None
        # Still receiving at every look: never stopped.
        for _ in range(4):
            await asyncio.sleep(GRACE * 1.5)
            assert body.stopped is None
            body.quiet = 0.0
        body.quiet = GRACE  # went quiet
        await asyncio.sleep(GRACE * 1.5)
        assert body.stopped == STOPPED_BY_REQUEST
        handover.close()

    run(scenario)


def test_repeated_requests_arm_one_check() -> None:
    async def scenario() -> None:
        body = QuietBody(quiet=0.0)
        handover = Handover(body, GRACE)
        for _ in range(50):
            handover.request_stop()
        body.quiet = GRACE
        await asyncio.sleep(GRACE * 2)
        assert (body.stopped, body.stops) == (STOPPED_BY_REQUEST, 1)

    run(scenario)


def test_a_released_lock_stops_nothing_later() -> None:
    async def scenario() -> None:
        body = QuietBody(quiet=0.0)
        handover = Handover(body, GRACE)
        handover.request_stop()
        handover.close()
        body.quiet = 10.0
        await asyncio.sleep(GRACE * 2)
        assert body.stops == 0
        handover.request_stop()  # a late request after release
        assert body.stops == 0

    run(scenario)


def test_a_body_already_received_is_not_stopped() -> None:
    async def scenario() -> None:
        body = QuietBody(quiet=10.0)
        body.complete = True
        Handover(body, GRACE).request_stop()
        assert body.stops == 0

    run(scenario)


def test_a_request_without_a_body_is_never_interrupted() -> None:
    async def scenario() -> None:
        Handover(None, GRACE).request_stop()  # nothing to stop, nothing raised
        Handover(None, GRACE).lost()

    run(scenario)


def test_a_lost_lock_stops_even_a_receiving_body() -> None:
    async def scenario() -> None:
        body = QuietBody(quiet=0.0)
        Handover(body, GRACE).lost()
        assert body.stopped == STOPPED_LOCK_LOST

    run(scenario)


def test_lock_for_wires_the_rule_into_a_locker() -> None:
    """A newcomer waits for a receiving holder, and gets the lock once the holder goes quiet and ends."""

    async def scenario() -> None:
        locker = MemoryLocker()
        body = QuietBody(quiet=0.0)
        held = await lock_for(locker, "u", body, grace=GRACE, timeout=1.0)
        newcomer = asyncio.create_task(lock_for(locker, "u", None, grace=GRACE, timeout=5.0))
        await asyncio.sleep(GRACE * 3)
        assert not newcomer.done() and body.stopped is None
        body.quiet = GRACE
        await asyncio.sleep(GRACE * 2)  # the pending check (due within GRACE) runs before this ends
        assert body.stopped == STOPPED_BY_REQUEST
        await held.release()  # what the holder does once its body ends
        await (await newcomer).release()

    run(scenario)


def test_a_request_that_just_got_the_lock_is_not_quiet() -> None:
    """It may have waited longer than the grace for the lock (its body silent meanwhile): quietness counts
    from when it got the lock, so the next newcomer does not stop it before it could read a byte."""

    async def scenario() -> None:
        body = QuietBody(quiet=10.0)  # nothing received since the request began, long ago
        handover = Handover(body, GRACE)
        handover.held()
        handover.request_stop()
        assert body.stopped is None
        await asyncio.sleep(GRACE * 2)  # still nothing received, now for the whole grace since it got the lock
        assert body.stopped == STOPPED_BY_REQUEST

    run(scenario)
