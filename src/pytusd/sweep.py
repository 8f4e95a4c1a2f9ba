"""Removing expired uploads: the expiration extension's other half (checking expiry per request is
:meth:`pytusd.uploads.UploadService.check_expired`).

Apart from the upload service because it is a background job over all uploads, not a step of a
request: the ASGI app runs it every ``--expire-interval``.
"""

from __future__ import annotations

from pytusd.locks.base import LockTimeout, LockUnavailable
from pytusd.stores.base import StoreError, UploadNotFound
from pytusd.uploads import UploadService


async def sweep_expired(service: UploadService) -> int:
    """Remove unfinished uploads whose expiry has passed; returns how many.

    With instances sharing a locker, one of them sweeps per interval; every removal is checked
    again under the upload's lock (a write may have come in since it was listed).
    """
    config, locker, store = service.config, service.locker, service.store
    if not config.expire_after:
        return 0
    # The turn outlasts one interval, so a living leader keeps it and a dead one's lapses.
    if not await locker.lead("sweep", config.expire_interval * 1.5):
        return 0
    removed = 0
    async for upload_id in store.list_uploads():
        try:
            if not await _expired(service, upload_id):
                continue
            # Not asking a holder to stop: a request holding the upload is using it after all.
            lock = await locker.acquire(upload_id, _ignore, 0.0, stop_holder=False)
        except (UploadNotFound, LockTimeout, LockUnavailable, StoreError):
            continue  # gone, or being written right now (so not expired after all)
        try:
            if not await _expired(service, upload_id):
                continue
            info = await store.get_info(upload_id)
            await store.terminate(upload_id)
            await locker.forget(upload_id)
            removed += 1
        except (UploadNotFound, StoreError):
            continue  # gone meanwhile, or the store failed: the next sweep tries again
        finally:
            await lock.release()
        await service.finals.drop_pending(info)
    return removed


async def _expired(service: UploadService, upload_id: str) -> bool:
    info = await service.store.get_info(upload_id)
    if info.is_complete or info.is_final:
        return False
    expire_after = service.config.expire_after
    return service.clock() > await service.store.last_write_time(upload_id) + expire_after


def _ignore() -> None:
    """A stop request to a lock taken only to remove an upload: there is nothing to stop."""
