"""The upload service: every step both protocols share, in one place, knowing neither protocol.

tus (:mod:`pytusd.tus`) and the IETF draft (:mod:`pytusd.ietf`) parse their headers and shape
their responses; creating an upload, opening one for writing (lock, authorization, expiry),
receiving a body into it, finishing it, concatenating, terminating and sweeping are done here,
once. Errors are :class:`~pytusd.protocol.errors.HTTPError`: both protocols are HTTP and these
steps fail alike in both; a front end adds its own headers to the error before it is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from pytusd.config import Config
from pytusd.faults import answer_storage_failure
from pytusd.finals import Finals
from pytusd.handover import STOPPED_LOCK_LOST, lock_for
from pytusd.hooks.base import HookEvent, HookRequest, HookResponse, Hooks, NoHooks
from pytusd.hooks.translate import raise_if_rejected, rejection, success_headers
from pytusd.idle import timeout_error
from pytusd.info import UploadInfo
from pytusd.locks.base import Lock, Locker
from pytusd.locks.memory import MemoryLocker
from pytusd.messages import Body, Headers
from pytusd.metrics.recorder import NO_METRICS, Recorder
from pytusd.protocol.errors import INCONSISTENT_LENGTH, MISMATCHING_OFFSET, HTTPError, bad_request
from pytusd.protocol.urls import is_valid_upload_id
from pytusd.receiving import ChecksumMismatch, DirectBody, TooLarge, Verifier, end_followers, follow_offset, guarded
from pytusd.stores.base import DataStore, InvalidStorage, StoreError, UploadExists, UploadNotFound, UploadTooLarge

logger = logging.getLogger("pytusd")

#: Sends the stored offset to the client while a body arrives (IETF 104 responses).
ProgressSender = Callable[[int], Awaitable[None]]
#: A front end's last look at a fully received body, before the upload may finish: an error, or None.
BodyCheck = Callable[[Body, Verifier | None], HTTPError | None]

STOPPED_BY_SHUTDOWN = "server is shutting down"
STOPPED_BY_HOOK = "stopped by a post-receive hook"


@dataclass(slots=True)
class WriteResult:
    """What receiving a body did: the upload now, bytes stored, and the error to answer, if any.

    An error does not undo stored bytes: the client resumes after them.
    """

    info: UploadInfo
    written: int
    error: HTTPError | None = None
    #: Headers a pre-finish hook added to the success response.
    headers: Headers = field(default_factory=list)


class UploadService:
    """Uploads in a store, guarded by a locker, watched by hooks; see the module docstring."""

    def __init__(
        self,
        store: DataStore,
        config: Config | None = None,
        *,
        locker: Locker | None = None,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.time,
        metrics: Recorder = NO_METRICS,
    ) -> None:
        self.store = store
        self.config = config or Config()
        self.locker = locker or MemoryLocker()
        self.hooks = hooks or NoHooks()
        #: Where uploads created, finished, terminated and bytes received are counted.
        self.metrics = metrics
        self.hooks.count_into(metrics)
        #: Seconds since the epoch; injectable so expiry is testable without sleeping.
        self.clock = clock
        features = store.features
        self.can_defer_length = "creation-defer-length" in features
        self.can_terminate = "termination" in features and not self.config.disable_termination
        self.can_concatenate = "concatenation" in features and not self.config.disable_concatenation
        self.can_download = "download" in features and not self.config.disable_download
        self.finals = Finals(store, self.locker, self.config, check_size=self.check_size, fire=self.fire)
        self._active: set[Body] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._shutting_down = False

    # -- lifecycle ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop every body being received; each request saves what it has and answers."""
        self._shutting_down = True
        for body in list(self._active):
            body.stop(STOPPED_BY_SHUTDOWN)

    def receiving(self) -> list[Body]:
        """The bodies being received now (pytusd.idle stops those that went quiet)."""
        return list(self._active)

    async def wait_background(self) -> None:
        """Wait for non-blocking hooks still running (used at shutdown and in tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- rules every step shares --------------------------------------------------------------

    def check_size(self, size: int | None, what: str = "upload") -> None:
        """The one max-size rule: an upload (or a length declared for it) over ``max_size`` is a 413."""
        if self.config.max_size and size is not None and size > self.config.max_size:
            raise HTTPError(413, f"{what} is larger than the server allows")

    async def lock(self, upload_id: str, body: Body | None) -> Lock:
        """The upload's lock; a later request for it stops ``body`` once it has gone quiet (the
        holder saves and answers; see :mod:`pytusd.handover`)."""
        return await lock_for(
            self.locker, upload_id, body, grace=self.config.lock_grace, timeout=self.config.lock_timeout
        )

    async def authorize(self, info: UploadInfo, hook_request: HookRequest) -> None:
        """pytusd's pre-access hook decides whether this request may touch the upload."""
        if self.hooks.enabled(HookEvent.PRE_ACCESS):
            answer = await self.hooks.run(HookEvent.PRE_ACCESS, info, hook_request)
            raise_if_rejected(answer, answer.reject_access, 403, "access denied by a pre-access hook")

    async def check_expired(self, info: UploadInfo) -> float | None:
        """410 for an unfinished upload whose last write is longer ago than ``expire_after``;
        else when it expires if nothing more arrives (None: never), so callers can say so."""
        if not self.config.expire_after or info.is_complete or info.is_final:
            return None
        expires = await self.store.last_write_time(info.id) + self.config.expire_after
        if self.clock() > expires:
            raise HTTPError(410, "upload expired")
        return expires

    def expires_at(self, info: UploadInfo) -> float | None:
        """When an unfinished upload expires if nothing more arrives (None: never)."""
        if self.config.expire_after and not info.is_complete and not info.is_final:
            return self.clock() + self.config.expire_after
        return None

    @staticmethod
    def expect_offset(info: UploadInfo, offset: int) -> None:
        """A write must start where the upload stands (409 with the offset it stands at)."""
        if offset != info.offset:
            raise HTTPError(
                409,
                "Upload-Offset does not match the upload's offset",
                [("upload-offset", str(info.offset))],
                problem_type=MISMATCHING_OFFSET,
                extra={"expected-offset": info.offset, "provided-offset": offset},
            )

    # -- finding and opening uploads ----------------------------------------------------------

    async def find(self, upload_id: str, hook_request: HookRequest, *, check_expiry: bool = True) -> UploadInfo:
        """The upload as a reader sees it (no lock); a final upload whose partials are done is finished."""
        info, _ = await self.inspect(upload_id, hook_request, check_expiry=check_expiry)
        return info

    async def inspect(
        self, upload_id: str, hook_request: HookRequest, *, check_expiry: bool = True
    ) -> tuple[UploadInfo, float | None]:
        """:meth:`find`, and when the upload expires (None: never, or not checked), from the one
        look at its last write that the expiry check makes (on S3 that look costs requests)."""
        info = await self.store.get_info(upload_id)
        await self.authorize(info, hook_request)
        expires = await self.check_expired(info) if check_expiry else None
        if info.is_final and not info.is_complete:
            info = await self.finals.try_complete(info)
        return info, expires

    async def settled(self, upload_id: str, hook_request: HookRequest) -> tuple[UploadInfo, float | None]:
        """The upload once a write in flight has ended (the draft's offset retrieval): a stalled one is
        stopped and saves what it got; one still receiving is waited for (pytusd.handover). With
        when it expires, as :meth:`inspect`."""
        lock = await self.lock(upload_id, None)
        try:
            info = await self.store.get_info(upload_id)
        finally:
            await lock.release()
        await self.authorize(info, hook_request)
        return info, await self.check_expired(info)

    @contextlib.asynccontextmanager
    async def locked(self, upload_id: str, body: Body) -> AsyncIterator[None]:
        """The upload's lock around writing ``body`` into a new upload (its creation request)."""
        lock = await self.lock(upload_id, body)
        try:
            yield
        finally:
            await lock.release()

    @contextlib.asynccontextmanager
    async def open(
        self, upload_id: str, body: Body, hook_request: HookRequest, *, offset: int | None = None
    ) -> AsyncIterator[UploadInfo]:
        """The upload locked for writing ``body`` at ``offset``, authorized and not expired;
        unlocked on exit."""
        lock = await self.lock(upload_id, body)
        try:
            remembered = lock.held_here_last
            info = await self.store.get_info_to_write(upload_id, held_here_last=remembered)
            if remembered and offset is not None and info.offset != offset:
                # A store may have answered from memory: a 409 comes only from what it holds.
                info = await self.store.get_info(upload_id)
            await self.authorize(info, hook_request)
            await self.check_expired(info)
            yield info
        finally:
            try:
                self.store.forget_read_to_write(upload_id)
            finally:
                await lock.release()

    # -- creation -----------------------------------------------------------------------------

    async def create(
        self, info: UploadInfo, hook_request: HookRequest, partials: Sequence[UploadInfo] = ()
    ) -> tuple[UploadInfo, Headers]:
        """Give the upload an ID (a pre-create hook may choose it), store it, run post-create.

        Returns the stored upload and the headers a pre-create hook adds to the success response.
        """
        self.check_size(info.size)
        hook_headers: Headers = []
        info.id = uuid.uuid4().hex
        if self.hooks.enabled(HookEvent.PRE_CREATE):
            answer = await self.hooks.run(HookEvent.PRE_CREATE, info, hook_request)
            raise_if_rejected(answer, answer.reject_upload, 400, "upload rejected by a pre-create hook")
            if answer.change_id is not None:
                if not is_valid_upload_id(answer.change_id):
                    # Transports check this already (InvalidChange); a custom Hooks may not.
                    logger.warning("pre-create hook chose an invalid upload ID: %r", answer.change_id)
                    raise HTTPError(400, "pre-create hook chose an invalid upload ID")
                info.id = answer.change_id
            if answer.change_metadata is not None:
                info.metadata = dict(answer.change_metadata)
            if answer.change_storage is not None:
                info.storage = dict(answer.change_storage)
            hook_headers = success_headers(answer)
        try:
            info = await self.store.create(info)
        except UploadExists:
            raise HTTPError(409, "an upload with that ID exists") from None
        except InvalidStorage as exc:
            logger.warning("pre-create hook chose Storage %r the store refuses: %s", info.storage, exc)
            raise HTTPError(exc.status, f"pre-create hook chose an unusable Storage: {exc}") from None
        except UploadTooLarge as exc:
            raise HTTPError(413, str(exc)) from None
        except UploadNotFound:
            # Only a hook-chosen ID can be refused here (say, one naming the store's own files).
            logger.warning("pre-create hook chose an upload ID the store cannot use: %r", info.id)
            raise HTTPError(400, "pre-create hook chose an upload ID the store cannot use") from None
        if info.is_final:
            try:
                info = await self.finals.start(info, partials)
            except BaseException:
                # Nobody learns this final's URL: it must not stay behind half-made (a full disk).
                with contextlib.suppress(StoreError, OSError):
                    await self.store.terminate(info.id)
                raise
        self.fire(HookEvent.POST_CREATE, info, hook_request)
        return info, hook_headers

    async def load_partials(self, partial_ids: Sequence[str]) -> list[UploadInfo]:
        """The partial uploads a final upload joins; each must exist, be partial and not expired."""
        if not self.can_concatenate:
            raise bad_request("concatenation is disabled")
        partials = []
        for pid in partial_ids:
            try:
                partial = await self.store.get_info(pid)
            except UploadNotFound:
                raise bad_request("Upload-Concat names an upload that does not exist") from None
            if not partial.is_partial:
                raise bad_request("Upload-Concat names an upload that is not a partial upload")
            await self.check_expired(partial)
            partials.append(partial)
        return partials

    # -- lengths ------------------------------------------------------------------------------

    async def declare_length(self, info: UploadInfo, length: int) -> None:
        """Fix the length of a deferred-length upload (once; never below what was received)."""
        if info.size is not None:
            if info.size != length:
                raise bad_request("Upload-Length cannot be changed once set")
            return
        if length < info.offset:
            raise bad_request("Upload-Length is smaller than the bytes already received")
        self.check_size(length)
        await self.store.declare_length(info.id, length)
        info.size = length

    async def announce_length(self, info: UploadInfo, length: int) -> None:
        """Record a length the client announced without fixing the size (the draft from version 7)."""
        self.check_size(length)
        info.declared_length = length
        await self.store.update_info(info)

    # -- receiving ----------------------------------------------------------------------------

    async def receive(
        self,
        info: UploadInfo,
        body: Body,
        hook_request: HookRequest,
        verifier: Verifier | None,
        *,
        content_length: int | None,
        complete_on_end: bool = False,
        progress: ProgressSender | None = None,
        body_check: BodyCheck | None = None,
    ) -> WriteResult:
        """Stream ``body`` into the store under the upload's lock (held by the caller).

        Never raises for the body's sake: returns the new info and, if the request must fail, the
        error to send once the lock is released. ``complete_on_end``: a body received in full
        completes the upload (the draft's ``Upload-Complete: ?1``). ``progress``: called with the
        stored offset now and then while the body arrives. ``body_check``: the front end's last
        word on a received body before the upload may finish.
        """
        limit = self._room(info)
        if content_length is not None and 0 <= limit < content_length:
            return WriteResult(info, 0, HTTPError(413, "body is longer than the rest of the upload"))
        if self._shutting_down:
            body.stop(STOPPED_BY_SHUTDOWN)
        source: AsyncIterable[bytes]
        if verifier is None and content_length is not None and body.can_write_into:
            # Its length fits and no digest needs its bytes: the body may write itself.
            source = DirectBody(body)
        else:
            source = guarded(body, limit, verifier)
        stops: list[HookResponse] = []
        watchers = self._watch(info, hook_request, body, progress, stops)
        self._active.add(body)
        self.metrics.receiving(1)
        error: HTTPError | None = None
        written = 0
        try:
            written = await self.store.write_chunk(
                info.id, info.offset, source, all_or_nothing=verifier is not None, length=content_length
            )
        except TooLarge:
            error = HTTPError(413, "body is longer than the rest of the upload")
        except ChecksumMismatch:
            # A chunk cut short by the timeout is no mismatch: the client should resume, not give up.
            error = timeout_error(body) or HTTPError(460, "checksum mismatch")
        except HTTPError as exc:
            error = exc
        except UploadNotFound:
            raise
        except (StoreError, OSError) as exc:
            # A full disk, S3 gone: answered 507/503 with the offset that is stored (a creation
            # with upload also with its Location, so the client can resume).
            error = answer_storage_failure(exc)
        finally:
            self._active.discard(body)
            self.metrics.receiving(-1)
            await end_followers(watchers)
        if error is not None:
            # The store kept what arrived before the failure (never with a checksum): reread it;
            # a store that cannot answer now still holds at least what it held before.
            try:
                fresh = await self.store.get_info(info.id)
            except (StoreError, OSError):
                fresh = info
            self.metrics.received(fresh.offset - info.offset)
            return WriteResult(fresh, fresh.offset - info.offset, error)
        info.offset += written
        self.metrics.received(written)
        if body.stopped == STOPPED_BY_HOOK and stops:
            return await self._stopped_by_hook(info, written, stops[0])
        if body.stopped is not None:
            if body.stopped in (STOPPED_BY_SHUTDOWN, STOPPED_LOCK_LOST):
                error = HTTPError(503, f"upload {body.stopped}", [("retry-after", "1")])
            else:
                error = timeout_error(body) or HTTPError(400, f"upload {body.stopped}")
            return WriteResult(info, written, error)
        if body.disconnected:
            return WriteResult(info, written, HTTPError(400, "client disconnected"))
        error = body_check(body, verifier) if body_check is not None else None
        if error is None and complete_on_end and body.complete:
            error = await self._complete_at_end(info)
        if error is not None:
            return WriteResult(info, written, error)
        if written:
            self.fire(HookEvent.POST_RECEIVE, info, hook_request)
        if info.is_complete:
            return await self.finish(info, hook_request, written)
        return WriteResult(info, written)

    def _room(self, info: UploadInfo) -> int:
        """How many more bytes the upload takes (-1: no limit)."""
        if info.size is not None:
            return info.size - info.offset
        if info.declared_length is not None:
            return info.declared_length - info.offset
        if self.config.max_size:
            return self.config.max_size - info.offset
        return -1

    async def _complete_at_end(self, info: UploadInfo) -> HTTPError | None:
        """A body that completes the upload: its length is where it ended (or an error)."""
        mismatch = HTTPError(400, "upload completed before reaching its length", problem_type=INCONSISTENT_LENGTH)
        if info.size is None:
            if info.declared_length not in (None, info.offset):
                return mismatch
            await self.declare_length(info, info.offset)
        elif info.size != info.offset:
            return mismatch
        return None

    async def finish(self, info: UploadInfo, hook_request: HookRequest, written: int = 0) -> WriteResult:
        """pre-finish may still refuse a complete upload; post-finish follows. After the last write,
        or (from a front end) for an upload complete when created: empty, or a final joined at once."""
        headers: Headers = []
        if self.hooks.enabled(HookEvent.PRE_FINISH):
            answer = await self.hooks.run(HookEvent.PRE_FINISH, info, hook_request)
            if answer.reject_upload or (answer.status or 0) >= 400:
                return WriteResult(info, written, rejection(answer, 400, "upload rejected by a pre-finish hook"))
            headers = success_headers(answer)
        self.fire(HookEvent.POST_FINISH, info, hook_request)
        return WriteResult(info, written, headers=headers)

    async def after_write(self, info: UploadInfo) -> None:
        """Once the lock is released: a partial that just completed finishes its waiting finals."""
        if info.is_complete and info.pending_finals:
            await self.finals.finish_pending(info)

    def _watch(
        self,
        info: UploadInfo,
        hook_request: HookRequest,
        body: Body,
        progress: ProgressSender | None,
        stops: list[HookResponse],
    ) -> list[asyncio.Task[None]]:
        """Tasks that follow the stored offset while a body arrives: progress, post-receive."""
        loop = asyncio.get_running_loop()
        tasks = []
        if progress is not None and self.config.progress_interval > 0:

            async def report(offset: int) -> bool:
                await progress(offset)
                return False

            tasks.append(loop.create_task(follow_offset(self.store, info, self.config.progress_interval, report)))
        if self.hooks.enabled(HookEvent.POST_RECEIVE):

            async def post_receive(offset: int) -> bool:
                snapshot = replace(info, offset=offset, metadata=dict(info.metadata), storage=dict(info.storage))
                answer = await self.hooks.run(HookEvent.POST_RECEIVE, snapshot, hook_request)
                if not answer.stop_upload:
                    return False
                stops.append(answer)
                body.stop(STOPPED_BY_HOOK)
                return True

            # The hooks pace post-receive per upload; polling finds the offsets to report.
            interval = self.hooks.progress_interval or 1.0
            tasks.append(loop.create_task(follow_offset(self.store, info, interval, post_receive)))
        return tasks

    async def _stopped_by_hook(self, info: UploadInfo, written: int, answer: HookResponse) -> WriteResult:
        """As tusd: an upload stopped by a post-receive hook is terminated; the client gets the hook's answer."""
        if "termination" in self.store.features:
            try:
                await self.store.terminate(info.id)
            except (UploadNotFound, StoreError, OSError) as exc:
                logger.warning("could not terminate upload %s stopped by a hook: %s", info.id, exc)
        return WriteResult(info, written, rejection(answer, 400, "upload stopped by a post-receive hook"))

    # -- termination and reading --------------------------------------------------------------

    async def terminate(self, upload_id: str, hook_request: HookRequest) -> None:
        """Delete an upload (pre-terminate may refuse), and finals that can no longer complete."""
        lock = await self.lock(upload_id, None)
        try:
            info = await self.store.get_info(upload_id)
            await self.authorize(info, hook_request)
            if self.hooks.enabled(HookEvent.PRE_TERMINATE):
                answer = await self.hooks.run(HookEvent.PRE_TERMINATE, info, hook_request)
                reason = "termination rejected by a pre-terminate hook"
                raise_if_rejected(answer, answer.reject_termination, 400, reason)
            await self.store.terminate(upload_id)
            await self.locker.forget(upload_id)
        finally:
            await lock.release()
        await self.finals.drop_pending(info)
        self.fire(HookEvent.POST_TERMINATE, info, hook_request)

    def read(self, upload_id: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)`` of a complete upload."""
        return self.store.read(upload_id, start, end)

    # -- hooks --------------------------------------------------------------------------------

    def fire(self, event: HookEvent, info: UploadInfo, hook_request: HookRequest | None) -> None:
        """Run a non-blocking hook in the background; its failure is logged, never fatal.

        The post-* events are also the moments tusd counts uploads created, finished, terminated.
        """
        if event is HookEvent.POST_CREATE:
            self.metrics.upload_created()
        elif event is HookEvent.POST_FINISH:
            self.metrics.upload_finished()
        elif event is HookEvent.POST_TERMINATE:
            self.metrics.upload_terminated()
        if not self.hooks.enabled(event):
            return
        request = hook_request or HookRequest("", "", "", {})
        snapshot = replace(info, metadata=dict(info.metadata), storage=dict(info.storage))

        async def run() -> None:
            try:
                await self.hooks.run(event, snapshot, request)
            except Exception:
                logger.exception("%s hook failed", event)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
