"""The one way tests wait for something: :func:`wait_until`.

Every poll loop of the tests goes through here, so a wait that runs out always says what was
awaited, what the predicate last returned and (when a server is given) the tail of its log,
instead of a bare ``assert False`` or a silent ``False``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

T = TypeVar("T")

#: Generous bound for anything that must not hang (never a performance expectation).
TIMEOUT = 10.0


class HasLog(Protocol):
    def log(self) -> str: ...


class WaitTimeout(AssertionError):
    """What was awaited did not happen in time (or what it depended on died)."""


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = TIMEOUT,
    interval: float = 0.05,
    message: str | Callable[[], str] = "",
    server: HasLog | None = None,
    alive: Callable[[], str | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Poll ``predicate`` until it returns something true; return that value.

    Raises :class:`WaitTimeout` (an AssertionError) after ``timeout`` seconds, naming ``message``
    (what was awaited; a callable is called then, for details known only at the end), the last
    value the predicate returned and the log tail of ``server``. ``alive`` returns a reason when
    something the wait depends on has died (a process exited), which fails the wait at once.
    The predicate is always tried once more after the deadline, so a slow machine only costs time.
    ``sleep``: how to pass the interval (a browser test's ``page.wait_for_timeout`` lets Playwright
    deliver its events meanwhile).
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and (problem := alive()) is not None:
            raise WaitTimeout(_describe(message, predicate, f"gave up: {problem}", server))
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        sleep(interval)
    value = predicate()
    if value:
        return value
    outcome = f"not reached within {timeout:g} s (last value: {value!r})"
    raise WaitTimeout(_describe(message, predicate, outcome, server))


def _describe(
    message: str | Callable[[], str], predicate: Callable[[], object], outcome: str, server: HasLog | None
) -> str:
    what = message() if callable(message) else message
    what = what or getattr(predicate, "__qualname__", repr(predicate))
    text = f"waited for {what}: {outcome}"
    if server is not None:
        text += f"\n--- server log tail ---\n{server.log()}"
    return text
