"""Final uploads of the concatenation extension: joined now, or once their last partial is done.

A final upload may name partials that are still arriving (concatenation-unfinished). Each such
partial records the final as pending; whoever completes the last partial, or asks about the final
later, joins them. A partial that is terminated or expires takes its waiting finals with it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from pytusd.config import Config
from pytusd.hooks.base import HookEvent, HookRequest
from pytusd.info import UploadInfo
from pytusd.locks.base import Lock, Locker, LockTimeout, LockUnavailable
from pytusd.protocol.errors import HTTPError
from pytusd.stores.base import DataStore, StoreError, UploadNotFound

logger = logging.getLogger("pytusd")


class Finals:
    """Joins partial uploads into final ones, under the final's lock."""

    def __init__(
        self,
        store: DataStore,
        locker: Locker,
        config: Config,
        *,
        check_size: Callable[[int | None, str], None],
        fire: Callable[[HookEvent, UploadInfo, HookRequest | None], None],
    ) -> None:
        self.store = store
        self.locker = locker
        self.config = config
        self._check_size = check_size
        self._fire = fire

    def _lock(self, upload_id: str) -> Awaitable[Lock]:
        return self.locker.acquire(upload_id, lambda: None, self.config.lock_timeout)

    async def start(self, final: UploadInfo, partials: Sequence[UploadInfo]) -> UploadInfo:
        """Concatenate now if every partial is done; else let the last partial finish it."""
        if all(p.is_complete for p in partials):
            return await self._concatenate(final, partials)
        # What the partials will hold at least (their lengths where known, else what they hold now):
        # already too much, and the final could never complete.
        self._check_size(sum(_at_least(p) for p in partials), "concatenated upload")
        for partial_id in {p.id: None for p in partials if not p.is_complete}:
            # Not under the partial's lock (that would stop the partial's own upload): the store
            # records the link without rewriting what a concurrent request may have changed.
            await self.store.add_pending_final(partial_id, final.id)
        return final

    async def _concatenate(self, final: UploadInfo, partials: Sequence[UploadInfo]) -> UploadInfo:
        total = sum(p.offset for p in partials)
        self._check_size(total, "concatenated upload")
        await self.store.concatenate(final, partials)
        if final.size != total:
            final.size = total
            await self.store.update_info(final)
        final.offset = total
        return final

    async def try_complete(self, final: UploadInfo) -> UploadInfo:
        """Finish a final upload whose partials are all complete (concatenation-unfinished)."""
        try:
            partials = [await self.store.get_info(pid) for pid in final.partial_uploads]
        except UploadNotFound:
            raise HTTPError(410, "a partial upload this final upload joins is gone") from None
        if not all(p.is_complete for p in partials):
            return final
        lock = await self._lock(final.id)
        try:
            final = await self.store.get_info(final.id)
            if final.is_complete:
                return final
            try:
                self._check_size(sum(p.offset for p in partials), "concatenated upload")
            except HTTPError:
                # Deferred lengths grew past --max-size: this final can never complete; drop it
                # rather than answer 413 for ever (finals do not expire).
                await self.store.terminate(final.id)
                await self.locker.forget(final.id)
                raise
            final = await self._concatenate(final, partials)
        finally:
            await lock.release()
        self._fire(HookEvent.POST_FINISH, final, None)
        return final

    async def finish_pending(self, partial: UploadInfo) -> None:
        """A partial just completed: finish every final that waited for it (and now may)."""
        for final_id in partial.pending_finals:
            try:
                final = await self.store.get_info(final_id)
            except UploadNotFound:
                continue
            if not final.is_complete:
                try:
                    await self.try_complete(final)
                except (HTTPError, LockTimeout, LockUnavailable, StoreError, OSError) as exc:
                    logger.warning("could not complete final upload %s: %s", final_id, exc)

    async def drop_pending(self, partial: UploadInfo) -> None:
        """Final uploads that waited for a partial that is now gone can never complete: remove them."""
        for final_id in partial.pending_finals:
            try:
                lock = await self._lock(final_id)
            except (LockTimeout, LockUnavailable):
                continue  # a final that cannot complete is harmless; the sweeper removes it if it expires
            try:
                with contextlib.suppress(UploadNotFound):  # already gone: nothing to drop
                    final = await self.store.get_info(final_id)
                    if not final.is_complete:
                        await self.store.terminate(final_id)
                        await self.locker.forget(final_id)
            finally:
                await lock.release()


def _at_least(partial: UploadInfo) -> int:
    """The fewest bytes ``partial`` will hold once complete."""
    for length in (partial.size, partial.declared_length):
        if length is not None:
            return length
    return partial.offset
