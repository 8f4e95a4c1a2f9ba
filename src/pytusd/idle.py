"""Stopping bodies whose client sent nothing for ``network_timeout`` seconds (tusd's network timeout).

A client that goes silent mid-body (its network died unnoticed, its source stalled) would hold
the upload's lock, a connection and a task for ever. One task per app looks at the bodies being
received now and stops those that have been waiting for bytes that long: each then saves what
it received (the offset a HEAD reports is stored data), releases the lock and answers
:data:`TIMEOUT_STATUS` with the offset and ``Connection: close``, if the client still listens.

The check costs nothing per chunk: it reads each body's :meth:`~pytusd.messages.Body.quiet_for`
(a time stamp the body keeps anyway) and sleeps until the earliest moment a body could reach the
timeout, at least ``timeout / CHECKS_PER_TIMEOUT`` so that many bodies cannot make it spin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from pytusd.messages import Body
from pytusd.protocol.errors import HTTPError

logger = logging.getLogger("pytusd")

STOPPED_BY_TIMEOUT = "stopped: the client sent nothing for the network timeout"
#: As tusd (ERR_READ_TIMEOUT): a 5xx, which tus clients retry (they resume from the offset sent).
TIMEOUT_STATUS = 500
#: The check runs at most this many times per timeout: a body is stopped within 1.125 timeouts.
CHECKS_PER_TIMEOUT = 8


def timeout_error(body: Body) -> HTTPError | None:
    """The answer to a request whose body this check stopped (None: it did not). The rest of the
    body may still come, so the connection cannot carry another request."""
    if body.stopped != STOPPED_BY_TIMEOUT:
        return None
    return HTTPError(TIMEOUT_STATUS, f"upload {STOPPED_BY_TIMEOUT}", [("connection", "close")])


def stop_quiet_bodies(bodies: Iterable[Body], timeout: float) -> float:
    """Stop the bodies quiet for ``timeout``; seconds until another could be (``timeout`` at most)."""
    wait = timeout
    for body in list(bodies):
        if body.stopped is not None or body.complete or body.disconnected:
            continue
        quiet = body.quiet_for()
        if quiet >= timeout:
            logger.info("stopping a request body that sent nothing for %.1f s", quiet)
            body.stop(STOPPED_BY_TIMEOUT)
        else:
            wait = min(wait, timeout - quiet)
    return max(wait, timeout / CHECKS_PER_TIMEOUT)


async def watch_bodies(bodies: Callable[[], Iterable[Body]], timeout: float) -> None:
    """Run :func:`stop_quiet_bodies` over ``bodies()`` for ever (cancel the task to end it)."""
    wait = timeout
    while True:
        await asyncio.sleep(wait)
        try:
            wait = stop_quiet_bodies(bodies(), timeout)
        except Exception:  # one odd body must not end the watch over all the others
            logger.exception("while looking for quiet request bodies")
            wait = timeout / CHECKS_PER_TIMEOUT
