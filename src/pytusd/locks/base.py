"""The locking contract.

A request that changes an upload holds its lock. A request that finds the lock held does not
queue behind a writer that may never finish (a client that vanished unnoticed): it asks the holder
to stop, and the holder decides when to let go (the upload service's policy: once its body has
gone quiet, see :mod:`pytusd.handover`); it then ends its body, saves what it received and
releases. Only a holder that does not let go within the timeout makes the newcomer fail with 423.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

StopCallback = Callable[[], None]


class LockTimeout(Exception):
    """The holder did not release in time."""


class LockUnavailable(Exception):
    """The lock service cannot be reached right now: the request should be retried later (503)."""


class Lock(abc.ABC):
    """A held lock; release it exactly once."""

    @abc.abstractmethod
    async def release(self) -> None: ...

    @property
    def held_here_last(self) -> bool:
        """Was this upload's lock, before we took it, last held and released by this same locker
        (this process), with no holder from any other process in between (not even one that crashed
        or lost its lock)? A store may then trust the state it remembers from its own last write
        instead of reading it again. A wrong True would make it act on stale state, so any doubt
        answers False (the default: the locker cannot tell).
        """
        return False


class Locker(abc.ABC):
    @abc.abstractmethod
    async def acquire(
        self,
        upload_id: str,
        on_stop_request: StopCallback,
        timeout: float,
        *,
        stop_holder: bool = True,
        on_lost: StopCallback | None = None,
    ) -> Lock:
        """Take the lock of ``upload_id``, asking a current holder to stop if there is one.

        ``on_stop_request`` is called (in this process's event loop) when another request wants
        the lock while we hold it; ``stop_holder=False`` waits without asking (the sweeper does not
        interrupt anyone). ``on_lost`` is called if the lock is lost while held (a locker whose
        locks can expire: the holder must stop writing at once). Raises :class:`LockTimeout` after
        ``timeout`` seconds, :class:`LockUnavailable` when the lock service cannot be reached.
        """

    async def lead(self, task: str, period: float) -> bool:
        """May this instance do the shared periodic ``task`` now? (False: another instance does.)

        Lockers that serve one machine answer True: every worker may sweep, the upload locks keep
        them apart. A locker shared by many instances lets one of them lead per ``period``.
        """
        return True

    async def forget(self, upload_id: str) -> None:  # noqa: B027 - optional hook
        """The upload was terminated (its lock is still held): drop what the lock kept for it."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (background tasks, connections)."""
