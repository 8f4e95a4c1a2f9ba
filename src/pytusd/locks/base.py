"""The locking contract.

A request that changes an upload holds its lock. A request that finds the lock held does not
queue behind a writer that may never finish (a client that vanished unnoticed): it asks the holder
to stop, and the holder ends its body, saves what it received and releases (tusd v2's behaviour).
Only a holder that does not let go within the timeout makes the newcomer fail with 423.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

StopCallback = Callable[[], None]


class LockTimeout(Exception):
    """The holder did not release in time."""


class Lock(abc.ABC):
    """A held lock; release it exactly once."""

    @abc.abstractmethod
    async def release(self) -> None: ...


class Locker(abc.ABC):
    @abc.abstractmethod
    async def acquire(self, upload_id: str, on_stop_request: StopCallback, timeout: float) -> Lock:
        """Take the lock of ``upload_id``, asking a current holder to stop if there is one.

        ``on_stop_request`` is called (in this process's event loop) when another request wants
        the lock while we hold it. Raises :class:`LockTimeout` after ``timeout`` seconds.
        """

    async def forget(self, upload_id: str) -> None:  # noqa: B027 - optional hook
        """The upload was terminated (its lock is still held): drop what the lock kept for it."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (background tasks, connections)."""
