"""The body timeout's check (pytusd.idle) and what it reads: how long a body has waited for bytes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pytusd.asgi import ASGIBody
from pytusd.idle import CHECKS_PER_TIMEOUT, STOPPED_BY_TIMEOUT, stop_quiet_bodies
from tests.unit.test_handover import QuietBody


def test_bodies_quiet_for_the_timeout_are_stopped_and_others_are_not() -> None:
    quiet, busy = QuietBody(quiet=10.0), QuietBody(quiet=6.0)
    done, gone, stopped = QuietBody(quiet=99.0), QuietBody(quiet=99.0), QuietBody(quiet=99.0)
    done.complete, gone.disconnected, stopped.stopped = True, True, "stopped by a newer request"
    wait = stop_quiet_bodies([quiet, busy, done, gone, stopped], timeout=10.0)
    assert quiet.stopped == STOPPED_BY_TIMEOUT
    assert busy.stopped is None and done.stopped is None and gone.stopped is None
    assert stopped.stops == 0
    assert wait == 4.0  # when the busy one could reach the timeout


def test_the_check_never_spins() -> None:
    assert stop_quiet_bodies([QuietBody(quiet=9.999)], timeout=10.0) == 10.0 / CHECKS_PER_TIMEOUT
    assert stop_quiet_bodies([], timeout=10.0) == 10.0


def test_a_body_is_quiet_only_while_its_reader_waits_for_bytes() -> None:
    async def scenario() -> None:
        arrived: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        body = ASGIBody(arrived.get, {"type": "http", "extensions": {}})
        await asyncio.sleep(0.05)
        assert body.quiet_for() == 0.0  # not read yet: the request is busy elsewhere
        chunks = body.__aiter__()
        await arrived.put({"type": "http.request", "body": b"a", "more_body": True})
        assert await anext(chunks) == b"a"
        await asyncio.sleep(0.05)
        assert body.quiet_for() == 0.0  # storing what it received: not the client's silence
        reading = asyncio.ensure_future(anext(chunks))
        await asyncio.sleep(0.05)
        assert body.quiet_for() > 0.0  # waiting for bytes that do not come
        body.stop(STOPPED_BY_TIMEOUT)
        with contextlib.suppress(StopAsyncIteration):  # the stop ends the chunks
            await reading
        assert body.stopped == STOPPED_BY_TIMEOUT

    asyncio.run(asyncio.wait_for(scenario(), 10))
