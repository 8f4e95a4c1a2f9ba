"""One upload request from start to end: protocol rules, store, lock and hooks.

The handler is independent of the web server: it takes a :class:`~pytusd.messages.Request` and
returns a :class:`~pytusd.messages.Response`. It is the only place where HTTP meets storage: it
checks offsets, sizes and locks, so a store only ever sees valid, serialized calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace

from pytusd.config import Config
from pytusd.draft import DraftProtocol
from pytusd.hooks.base import HookError, HookEvent, HookRequest, HookResponse, Hooks, NoHooks
from pytusd.info import UploadInfo
from pytusd.locks.base import Lock, Locker, LockTimeout
from pytusd.locks.memory import MemoryLocker
from pytusd.messages import Body, Headers, Request, Response
from pytusd.protocol import download, ietf
from pytusd.protocol.checksum import ALGORITHM_LIST, ALGORITHMS, Digest
from pytusd.protocol.cors import CorsPolicy
from pytusd.protocol.errors import HTTPError, bad_request, not_found
from pytusd.protocol.forwarded import origin_of
from pytusd.protocol.headers import (
    Checksum,
    format_metadata,
    http_date,
    parse_checksum,
    parse_metadata,
    parse_non_negative_int,
)
from pytusd.protocol.ietf import INCONSISTENT_LENGTH
from pytusd.protocol.urls import (
    Concat,
    format_concat,
    id_from_path,
    is_valid_upload_id,
    parse_concat,
    upload_path,
)
from pytusd.stores.base import DataStore, DirectSource, StoreError, UploadExists, UploadNotFound, UploadTooLarge

logger = logging.getLogger("pytusd")
ProgressSender = Callable[[int], Awaitable[None]]

TUS_VERSION = "1.0.0"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
STOPPED_BY_REQUEST = "stopped by a newer request for this upload"
STOPPED_BY_SHUTDOWN = "server is shutting down"
STOPPED_BY_HOOK = "stopped by a post-receive hook"


class _TooLarge(Exception):
    pass


class _ChecksumMismatch(Exception):
    pass


@dataclass(slots=True)
class _WriteResult:
    info: UploadInfo
    written: int
    error: HTTPError | None = None
    #: Headers a pre-finish hook added to the success response.
    headers: Headers = field(default_factory=list)


class UploadHandler:
    """Serves tus 1.0.0 requests on one base path."""

    def __init__(
        self,
        store: DataStore,
        config: Config | None = None,
        *,
        locker: Locker | None = None,
        hooks: Hooks | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config or Config()
        self.locker = locker or MemoryLocker()
        self.hooks = hooks or NoHooks()
        self.clock = clock
        self.cors = CorsPolicy(
            self.config.cors_allow_origin,
            credentials=self.config.cors_allow_credentials,
            max_age=self.config.cors_max_age,
        )
        self._active: set[Body] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._shutting_down = False
        self.extensions = self._extensions()
        self.draft = DraftProtocol(self)

    def _extensions(self) -> list[str]:
        features = self.store.features
        extensions = ["creation", "creation-with-upload"]
        if "creation-defer-length" in features:
            extensions.append("creation-defer-length")
        if self.config.expire_after:
            extensions.append("expiration")
        extensions.append("checksum")
        if "termination" in features and not self.config.disable_termination:
            extensions.append("termination")
        if "concatenation" in features and not self.config.disable_concatenation:
            extensions += ["concatenation", "concatenation-unfinished"]
        return extensions

    # -- lifecycle ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop every body being received; each request saves what it has and answers."""
        self._shutting_down = True
        for body in list(self._active):
            body.stop(STOPPED_BY_SHUTDOWN)

    async def wait_background(self) -> None:
        """Wait for non-blocking hooks still running (used at shutdown and in tests)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- entry point --------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        cors_ok = self.cors.allowed(origin)
        draft_version = None
        try:
            draft_version = ietf.parse_version(request.headers.get("upload-draft-interop-version"))
            response = await self._dispatch(request, cors_ok)
        except HTTPError as exc:
            if draft_version is not None and exc.problem_type and ietf.uses_problem_types(draft_version):
                response = Response(
                    exc.status, [*exc.headers, ("content-type", "application/problem+json")], ietf.problem_body(exc)
                )
            else:
                response = self._error_response(exc)
        except UploadNotFound:
            response = self._error_response(not_found())
        except LockTimeout:
            response = self._error_response(HTTPError(423, "upload is locked by another request that did not let go"))
        except HookError as exc:  # the hooks layer logged it
            status = getattr(exc, "status", 500)
            status = status if 500 <= status <= 599 else 500
            response = self._error_response(HTTPError(status, f"hook failed: {_one_line(str(exc))}"))
        except (StoreError, OSError) as exc:
            logger.exception("store failure")
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                response = self._error_response(HTTPError(507, "insufficient storage"))
            else:
                response = self._error_response(HTTPError(500, "storage error"))
        if draft_version is None and (request.method != "OPTIONS" or response.status >= 400):
            response.headers.append(("tus-resumable", TUS_VERSION))
        if cors_ok and origin is not None:
            preflight = request.method == "OPTIONS" and "access-control-request-method" in request.headers
            response.headers += self.cors.headers(origin, preflight=preflight)
        return response

    def _error_response(self, exc: HTTPError) -> Response:
        if isinstance(exc, _HookRejection) and exc.body is not None:
            # A hook's own answer goes out as the hook wrote it (tusd does the same).
            headers = list(exc.headers)
            if not any(name == "content-type" for name, _ in headers):
                headers.append(("content-type", "text/plain; charset=utf-8"))
            return Response(exc.status, headers, exc.body)
        headers = [(n, v) for n, v in exc.headers if n != "content-type"]
        headers.append(("content-type", "text/plain; charset=utf-8"))
        return Response(exc.status, headers, (_one_line(exc.reason) + "\n").encode())

    async def _dispatch(self, request: Request, cors_ok: bool) -> Response:
        method = request.method
        override = request.headers.get("x-http-method-override")
        if override:
            method = override.strip().upper()
        upload_id = id_from_path(self.config.base_path, request.path)
        if upload_id is None:
            raise not_found("not found")
        version = ietf.parse_version(request.headers.get("upload-draft-interop-version"))
        if method == "OPTIONS":
            response = self._options(request, cors_ok)
            if version is not None:
                response.headers += self.draft.options_headers(version)
            return response
        if version is not None and method != "GET":
            return await self.draft.handle(request, method, upload_id, version)
        if method != "GET" and request.headers.get("tus-resumable") != TUS_VERSION:
            raise HTTPError(412, "unsupported or missing Tus-Resumable version", [("tus-version", TUS_VERSION)])
        if upload_id == "":
            if method == "POST":
                return await self._post(request)
            raise HTTPError(405, "method not allowed", [("allow", "POST, OPTIONS")])
        if method == "HEAD":
            return await self._head(request, upload_id)
        if method == "PATCH":
            return await self._patch(request, upload_id)
        if method == "DELETE" and "termination" in self.extensions:
            return await self._delete(request, upload_id)
        if method == "GET" and not self.config.disable_download and "download" in self.store.features:
            return await self._get(request, upload_id)
        raise HTTPError(405, "method not allowed", [("allow", self._upload_methods())])

    def _upload_methods(self) -> str:
        methods = ["HEAD", "PATCH", "OPTIONS"]
        if "termination" in self.extensions:
            methods.append("DELETE")
        if not self.config.disable_download and "download" in self.store.features:
            methods.append("GET")
        return ", ".join(methods)

    # -- OPTIONS ------------------------------------------------------------------------------

    def _options(self, request: Request, cors_ok: bool) -> Response:
        # 200 rather than 204: some browsers reject a 204 preflight (tusd does the same).
        if "access-control-request-method" in request.headers and cors_ok:
            return Response(200, [("content-length", "0")])
        extensions = self.extensions
        if request.body.can_read_trailers:
            extensions = [*extensions, "checksum-trailer"]
        headers = [
            ("tus-version", TUS_VERSION),
            ("tus-extension", ",".join(extensions)),
            ("tus-checksum-algorithm", ALGORITHM_LIST),
        ]
        if self.config.max_size:
            headers.append(("tus-max-size", str(self.config.max_size)))
        return Response(200, headers)

    # -- HEAD ---------------------------------------------------------------------------------

    async def _head(self, request: Request, upload_id: str) -> Response:
        info = await self.store.get_info(upload_id)
        await self._authorize(request, info)
        await self._check_expired(info)
        if info.is_final and not info.is_complete:
            info = await self._try_complete_final(info)
        headers: Headers = [("cache-control", "no-store")]
        if not info.is_final or info.is_complete:
            headers.append(("upload-offset", str(info.offset)))
        if info.size is not None:
            headers.append(("upload-length", str(info.size)))
        elif not info.is_final:
            headers.append(("upload-defer-length", "1"))
        if info.metadata:
            headers.append(("upload-metadata", format_metadata(info.metadata)))
        concat = self._concat_header(info)
        if concat:
            headers.append(("upload-concat", concat))
        return Response(200, headers)

    def _concat_header(self, info: UploadInfo) -> str | None:
        if info.is_partial:
            return format_concat(Concat(is_partial=True), self.config.base_path)
        if info.is_final:
            concat = Concat(is_partial=False, partial_ids=tuple(info.partial_uploads))
            return format_concat(concat, self.config.base_path)
        return None

    # -- POST ---------------------------------------------------------------------------------

    async def _post(self, request: Request) -> Response:
        headers = request.headers
        concat = None
        if "upload-concat" in headers:
            if "concatenation" not in self.extensions:
                raise bad_request("concatenation is disabled")
            concat = parse_concat(headers["upload-concat"], self.config.base_path)
        metadata = parse_metadata(headers.get("upload-metadata"))
        info = UploadInfo(id="", metadata=metadata, created_at=self.clock())
        partials: list[UploadInfo] = []
        if concat is not None and concat.is_final:
            if "upload-length" in headers or "upload-defer-length" in headers:
                raise bad_request("a final upload must not carry Upload-Length or Upload-Defer-Length")
            partials = await self._load_partials(concat.partial_ids)
            info.is_final = True
            info.partial_uploads = list(concat.partial_ids)
            sizes = [p.size for p in partials]
            info.size = None if None in sizes else sum(s for s in sizes if s is not None)
        else:
            info.size = self._creation_length(headers)
            info.is_partial = concat is not None
        if self.config.max_size and info.size is not None and info.size > self.config.max_size:
            raise HTTPError(413, "upload is larger than the server allows")

        has_body = _has_body(headers) and _media_type(headers.get("content-type")) == OFFSET_OCTET_STREAM
        if has_body and info.is_final:
            raise HTTPError(403, "a final upload cannot carry data")
        checksum = self._checksum(headers) if has_body else None
        declared = headers.get("content-length") if has_body else None
        if (
            declared is not None
            and info.size is not None
            and parse_non_negative_int(declared, "Content-Length") > info.size
        ):
            raise HTTPError(413, "body is longer than Upload-Length")

        # Before anything is created: a request whose Host is unusable leaves nothing behind.
        origin = origin_of(headers, request.scheme, request.server_host, behind_proxy=self.config.behind_proxy)
        hook_request = self._hook_request(request)
        hook_headers: Headers = []
        info = await self._create_with_hooks(info, hook_request, partials, hook_headers)
        location = origin + upload_path(self.config.base_path, info.id)
        response_headers: Headers = [("location", location), *hook_headers]
        if has_body:
            lock = await self._lock(info.id, request.body)
            try:
                result = await self._receive(request, info, hook_request, self._tus_verifier(request, checksum))
            finally:
                await lock.release()
            info = result.info
            response_headers += result.headers
            if result.error is not None:
                # The upload exists: tell the client where, so it can resume.
                result.error.headers += [("location", location), ("upload-offset", str(info.offset))]
                raise result.error
        if not info.is_final or info.is_complete:
            response_headers.append(("upload-offset", str(info.offset)))
        self._expires_header(info, response_headers)
        return Response(201, response_headers)

    async def _create_with_hooks(
        self,
        info: UploadInfo,
        hook_request: HookRequest,
        partials: list[UploadInfo] | None = None,
        hook_headers: Headers | None = None,
    ) -> UploadInfo:
        """Give the upload an ID (a pre-create hook may choose it), store it, run post-create.

        ``hook_headers`` receives the headers a pre-create hook adds to the success response.
        """
        info.id = uuid.uuid4().hex
        if self.hooks.enabled(HookEvent.PRE_CREATE):
            answer = await self.hooks.run(HookEvent.PRE_CREATE, info, hook_request)
            _raise_if_rejected(answer, answer.reject_upload, 400, "upload rejected by a pre-create hook")
            if answer.change_id is not None:
                if not is_valid_upload_id(answer.change_id):
                    raise HTTPError(500, "pre-create hook chose an invalid upload ID")
                info.id = answer.change_id
            if answer.change_metadata is not None:
                info.metadata = dict(answer.change_metadata)
            if answer.change_storage is not None:
                info.storage = dict(answer.change_storage)
            if hook_headers is not None:
                hook_headers += _success_headers(answer)
        try:
            info = await self.store.create(info)
        except UploadExists:
            raise HTTPError(409, "an upload with that ID exists") from None
        except UploadTooLarge as exc:
            raise HTTPError(413, str(exc)) from None
        except UploadNotFound:
            # Only a hook-chosen ID can be refused here (say, one naming the store's own files).
            raise HTTPError(500, "pre-create hook chose an upload ID the store cannot use") from None
        if info.is_final:
            info = await self._start_final(info, partials or [])
        self._fire(HookEvent.POST_CREATE, info, hook_request)
        return info

    def _creation_length(self, headers: Mapping[str, str]) -> int | None:
        length = headers.get("upload-length")
        deferred = headers.get("upload-defer-length")
        if length is not None and deferred is not None:
            raise bad_request("Upload-Length and Upload-Defer-Length are mutually exclusive")
        if deferred is not None:
            if deferred.strip() != "1":
                raise bad_request("invalid Upload-Defer-Length header: must be 1")
            if "creation-defer-length" not in self.extensions:
                raise bad_request("deferred lengths are not supported")
            return None
        if length is None:
            raise bad_request("missing Upload-Length or Upload-Defer-Length header")
        return parse_non_negative_int(length, "Upload-Length")

    async def _load_partials(self, partial_ids: tuple[str, ...]) -> list[UploadInfo]:
        partials = []
        for pid in partial_ids:
            try:
                partial = await self.store.get_info(pid)
            except UploadNotFound:
                raise bad_request("Upload-Concat names an upload that does not exist") from None
            if not partial.is_partial:
                raise bad_request("Upload-Concat names an upload that is not a partial upload")
            await self._check_expired(partial)
            partials.append(partial)
        return partials

    async def _start_final(self, final: UploadInfo, partials: list[UploadInfo]) -> UploadInfo:
        """Concatenate now if every partial is done; else let the last partial finish it."""
        if all(p.is_complete for p in partials):
            return await self._concatenate(final, partials)
        for partial_id in {p.id: None for p in partials if not p.is_complete}:
            # Not under the partial's lock (that would stop the partial's own upload): the store
            # records the link without rewriting what a concurrent request may have changed.
            await self.store.add_pending_final(partial_id, final.id)
        return final

    async def _concatenate(self, final: UploadInfo, partials: list[UploadInfo]) -> UploadInfo:
        total = sum(p.offset for p in partials)
        if self.config.max_size and total > self.config.max_size:
            raise HTTPError(413, "concatenated upload is larger than the server allows")
        await self.store.concatenate(final, partials)
        if final.size != total:
            final.size = total
            await self.store.update_info(final)
        final.offset = total
        return final

    async def _try_complete_final(self, final: UploadInfo) -> UploadInfo:
        """Finish a final upload whose partials are all complete (concatenation-unfinished)."""
        try:
            partials = [await self.store.get_info(pid) for pid in final.partial_uploads]
        except UploadNotFound:
            raise HTTPError(410, "a partial upload this final upload joins is gone") from None
        if not all(p.is_complete for p in partials):
            return final
        lock = await self._lock(final.id, None)
        try:
            final = await self.store.get_info(final.id)
            if final.is_complete:
                return final
            final = await self._concatenate(final, partials)
        finally:
            await lock.release()
        self._fire(HookEvent.POST_FINISH, final, None)
        return final

    async def _finish_pending_finals(self, partial: UploadInfo) -> None:
        for final_id in partial.pending_finals:
            try:
                final = await self.store.get_info(final_id)
            except UploadNotFound:
                continue
            if not final.is_complete:
                try:
                    await self._try_complete_final(final)
                except (HTTPError, LockTimeout, StoreError) as exc:
                    logger.warning("could not complete final upload %s: %s", final_id, exc)

    # -- PATCH --------------------------------------------------------------------------------

    async def _patch(self, request: Request, upload_id: str) -> Response:
        headers = request.headers
        if _media_type(headers.get("content-type")) != OFFSET_OCTET_STREAM:
            raise HTTPError(415, f"Content-Type must be {OFFSET_OCTET_STREAM}")
        offset = parse_non_negative_int(headers.get("upload-offset"), "Upload-Offset")
        length_header = headers.get("upload-length")
        new_length = parse_non_negative_int(length_header, "Upload-Length") if length_header else None
        checksum = self._checksum(headers)
        hook_request = self._hook_request(request)

        lock = await self._lock(upload_id, request.body)
        try:
            info = await self.store.get_info(upload_id)
            await self._authorize(request, info)
            await self._check_expired(info)
            if info.is_final:
                raise HTTPError(403, "a final upload cannot be modified")
            if offset != info.offset:
                raise HTTPError(409, "Upload-Offset does not match the upload's offset",
                                [("upload-offset", str(info.offset))])  # fmt: skip
            if new_length is not None:
                await self._declare_length(info, new_length)
            result = await self._receive(request, info, hook_request, self._tus_verifier(request, checksum))
        finally:
            await lock.release()
        info = result.info
        if result.error is not None:
            result.error.headers.append(("upload-offset", str(info.offset)))
            raise result.error
        if info.is_complete and info.pending_finals:
            await self._finish_pending_finals(info)
        response_headers: Headers = [("upload-offset", str(info.offset)), *result.headers]
        self._expires_header(info, response_headers)
        return Response(204, response_headers)

    async def _declare_length(self, info: UploadInfo, length: int) -> None:
        if info.size is not None:
            if info.size != length:
                raise bad_request("Upload-Length cannot be changed once set")
            return
        if length < info.offset:
            raise bad_request("Upload-Length is smaller than the bytes already received")
        if self.config.max_size and length > self.config.max_size:
            raise HTTPError(413, "upload is larger than the server allows")
        await self.store.declare_length(info.id, length)
        info.size = length

    def _checksum(self, headers: Mapping[str, str]) -> Checksum | None:
        value = headers.get("upload-checksum")
        return parse_checksum(value, ALGORITHMS) if value is not None else None

    def _tus_verifier(self, request: Request, checksum: Checksum | None) -> _Verifier | None:
        """Upload-Checksum as a header, or announced as a trailer where trailers can be read."""
        if checksum is not None:
            verifier = _Verifier(request.body)
            verifier.expect(ALGORITHMS[checksum.algorithm](), checksum.digest)
            return verifier
        if _announces_checksum_trailer(request.headers) and request.body.can_read_trailers:
            verifier = _Verifier(request.body)
            verifier.expect_checksum_trailer()
            return verifier
        return None

    async def _receive(
        self,
        request: Request,
        info: UploadInfo,
        hook_request: HookRequest,
        verifier: _Verifier | None,
        *,
        complete_on_end: bool = False,
        progress: ProgressSender | None = None,
    ) -> _WriteResult:
        """Stream the body into the store under the upload's lock; never raises for the body's sake.

        Returns the new info and, if the request must fail, the error to send once the lock is
        released (bytes that were stored stay stored: the client resumes after them).
        ``complete_on_end``: a body received in full completes the upload (IETF ``Upload-Complete``).
        ``progress``: called with the stored offset now and then while the body arrives.
        """
        if info.size is not None:
            limit = info.size - info.offset
        elif info.declared_length is not None:
            limit = info.declared_length - info.offset
        elif self.config.max_size:
            limit = self.config.max_size - info.offset
        else:
            limit = -1
        declared = request.headers.get("content-length")
        content_length: int | None = None
        if declared is not None:
            content_length = parse_non_negative_int(declared, "Content-Length")
            if 0 <= limit < content_length:
                return _WriteResult(info, 0, HTTPError(413, "body is longer than the rest of the upload"))
        body = request.body
        if self._shutting_down:
            body.stop(STOPPED_BY_SHUTDOWN)
        source: AsyncIterable[bytes]
        if verifier is None and content_length is not None and body.can_write_into:
            # Its length fits and no digest needs its bytes: the body may write itself.
            source = _DirectBody(body)
        else:
            source = _guarded(body, limit, verifier)
        self._active.add(body)
        error: HTTPError | None = None
        written = 0
        reporter = None
        if progress is not None and self.config.progress_interval > 0:
            reporter = asyncio.get_running_loop().create_task(self._report_progress(info, progress))
        stops: list[HookResponse] = []
        watcher = None
        if self.hooks.enabled(HookEvent.POST_RECEIVE):
            watcher = asyncio.get_running_loop().create_task(self._watch_post_receive(info, hook_request, body, stops))
        try:
            written = await self.store.write_chunk(info.id, info.offset, source, all_or_nothing=verifier is not None)
        except _TooLarge:
            error = HTTPError(413, "body is longer than the rest of the upload")
        except _ChecksumMismatch:
            error = HTTPError(460, "checksum mismatch")
        except HTTPError as exc:
            error = exc
        finally:
            self._active.discard(body)
            for task in (reporter, watcher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        if error is not None:
            # The store kept what arrived before the limit (never with a checksum): reread it.
            fresh = await self.store.get_info(info.id)
            return _WriteResult(fresh, fresh.offset - info.offset, error)
        info.offset += written
        if body.stopped == STOPPED_BY_HOOK and stops:
            return await self._stopped_by_hook(info, written, stops[0])
        if body.stopped is not None:
            status = 503 if body.stopped == STOPPED_BY_SHUTDOWN else 400
            return _WriteResult(info, written, HTTPError(status, f"upload {body.stopped}"))
        if body.disconnected:
            return _WriteResult(info, written, HTTPError(400, "client disconnected"))
        if verifier is None and "upload-checksum" in (body.trailers() or {}):
            # Not announced, so the chunk was not held back: it is stored, unverified.
            reason = "an Upload-Checksum trailer must be announced in a Trailer header; the chunk was kept unverified"
            return _WriteResult(info, written, HTTPError(400, reason))
        if complete_on_end and body.complete:
            if info.size is None and info.declared_length not in (None, info.offset):
                error = HTTPError(400, "upload completed before reaching its length", problem_type=INCONSISTENT_LENGTH)
                return _WriteResult(info, written, error)
            if info.size is None:
                await self._declare_length(info, info.offset)
            elif info.size != info.offset:
                error = HTTPError(400, "upload completed before reaching its length", problem_type=INCONSISTENT_LENGTH)
                return _WriteResult(info, written, error)
        if written and self.hooks.enabled(HookEvent.POST_RECEIVE):
            self._fire(HookEvent.POST_RECEIVE, info, hook_request)
        if info.is_complete:
            if self.hooks.enabled(HookEvent.PRE_FINISH):
                answer = await self.hooks.run(HookEvent.PRE_FINISH, info, hook_request)
                if answer.reject_upload or (answer.status or 0) >= 400:
                    rejection = _rejection(answer, 400, "upload rejected by a pre-finish hook")
                    return _WriteResult(info, written, rejection)
                self._fire(HookEvent.POST_FINISH, info, hook_request)
                return _WriteResult(info, written, headers=_success_headers(answer))
            self._fire(HookEvent.POST_FINISH, info, hook_request)
        return _WriteResult(info, written)

    async def _watch_post_receive(
        self, info: UploadInfo, hook_request: HookRequest, body: Body, stops: list[HookResponse]
    ) -> None:
        """post-receive while a body arrives (the hooks pace it per upload); StopUpload stops the body."""
        last = info.offset
        interval = self.hooks.progress_interval or 1.0
        while True:
            await asyncio.sleep(interval)
            try:
                offset = (await self.store.get_info(info.id)).offset
            except (UploadNotFound, StoreError, OSError):
                continue
            if offset == last:
                continue
            last = offset
            snapshot = replace(info, offset=offset, metadata=dict(info.metadata), storage=dict(info.storage))
            try:
                answer = await self.hooks.run(HookEvent.POST_RECEIVE, snapshot, hook_request)
            except Exception:
                logger.exception("post-receive hook failed")
                continue
            if answer.stop_upload:
                stops.append(answer)
                body.stop(STOPPED_BY_HOOK)
                return

    async def _stopped_by_hook(self, info: UploadInfo, written: int, answer: HookResponse) -> _WriteResult:
        """As tusd: an upload stopped by a post-receive hook is terminated; the client gets the hook's answer."""
        if "termination" in self.store.features:
            try:
                await self.store.terminate(info.id)
            except (UploadNotFound, StoreError, OSError) as exc:
                logger.warning("could not terminate upload %s stopped by a hook: %s", info.id, exc)
        return _WriteResult(info, written, _rejection(answer, 400, "upload stopped by a post-receive hook"))

    async def _report_progress(self, info: UploadInfo, send: ProgressSender) -> None:
        """Tell the client the stored offset while a body arrives (IETF 104 responses)."""
        last = info.offset
        while True:
            await asyncio.sleep(self.config.progress_interval)
            offset = (await self.store.get_info(info.id)).offset
            if offset != last:
                last = offset
                await send(offset)

    # -- DELETE -------------------------------------------------------------------------------

    async def _delete(self, request: Request, upload_id: str) -> Response:
        lock = await self._lock(upload_id, None)
        try:
            info = await self.store.get_info(upload_id)
            await self._authorize(request, info)
            hook_request = self._hook_request(request)
            if self.hooks.enabled(HookEvent.PRE_TERMINATE):
                answer = await self.hooks.run(HookEvent.PRE_TERMINATE, info, hook_request)
                reject = answer.reject_termination
                _raise_if_rejected(answer, reject, 400, "termination rejected by a pre-terminate hook")
            await self.store.terminate(upload_id)
            await self.locker.forget(upload_id)
        finally:
            await lock.release()
        await self._drop_pending_finals(info)
        self._fire(HookEvent.POST_TERMINATE, info, hook_request)
        return Response(204)

    async def _drop_pending_finals(self, partial: UploadInfo) -> None:
        """Final uploads that waited for a partial that is now gone can never complete: remove them."""
        for final_id in partial.pending_finals:
            try:
                lock = await self.locker.acquire(final_id, lambda: None, self.config.lock_timeout)
            except LockTimeout:
                continue
            try:
                final = await self.store.get_info(final_id)
                if not final.is_complete:
                    await self.store.terminate(final_id)
                    await self.locker.forget(final_id)
            except UploadNotFound:
                pass
            finally:
                await lock.release()

    # -- GET ----------------------------------------------------------------------------------

    async def _get(self, request: Request, upload_id: str) -> Response:
        info = await self.store.get_info(upload_id)
        await self._authorize(request, info)
        if info.is_final and not info.is_complete:
            info = await self._try_complete_final(info)
        if not info.is_complete:
            raise HTTPError(409, "upload is not complete")
        size = info.offset
        headers = download.content_headers(info.metadata)
        headers += [("accept-ranges", "bytes"), ("cache-control", "no-store")]
        try:
            byte_range = download.parse_range(request.headers.get("range"), size)
        except download.RangeNotSatisfiable:
            raise HTTPError(416, "range not satisfiable", [("content-range", f"bytes */{size}")]) from None
        status, start, end = 200, 0, size
        if byte_range is not None:
            status, (start, end) = 206, byte_range
            headers.append(("content-range", f"bytes {start}-{end - 1}/{size}"))
        headers.append(("content-length", str(end - start)))
        body: AsyncIterator[bytes] = self.store.read(upload_id, start, end) if end > start else _no_bytes()
        return Response(status, headers, body)

    # -- shared -------------------------------------------------------------------------------

    async def _lock(self, upload_id: str, body: Body | None) -> Lock:
        def stop() -> None:
            if body is not None:
                body.stop(STOPPED_BY_REQUEST)

        return await self.locker.acquire(upload_id, stop, self.config.lock_timeout)

    async def _authorize(self, request: Request, info: UploadInfo) -> None:
        if self.hooks.enabled(HookEvent.PRE_ACCESS):
            answer = await self.hooks.run(HookEvent.PRE_ACCESS, info, self._hook_request(request))
            _raise_if_rejected(answer, answer.reject_access, 403, "access denied by a pre-access hook")

    async def _check_expired(self, info: UploadInfo) -> None:
        if not self.config.expire_after or info.is_complete or info.is_final:
            return
        last = await self.store.last_write_time(info.id)
        if self.clock() > last + self.config.expire_after:
            raise HTTPError(410, "upload expired")

    def _expires_header(self, info: UploadInfo, headers: Headers) -> None:
        if self.config.expire_after and not info.is_complete and not info.is_final:
            headers.append(("upload-expires", http_date(self.clock() + self.config.expire_after)))

    def _hook_request(self, request: Request) -> HookRequest:
        grouped: dict[str, list[str]] = {}
        for name, value in request.raw_headers:
            grouped.setdefault(_canonical(name.decode("latin-1")), []).append(value.decode("latin-1"))
        uri = request.path + (f"?{request.query}" if request.query else "")
        return HookRequest(request.method, uri, request.client_addr, grouped)

    def _fire(self, event: HookEvent, info: UploadInfo, hook_request: HookRequest | None) -> None:
        """Run a non-blocking hook in the background; its failure is logged, never fatal."""
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

    async def sweep_expired(self) -> int:
        """Remove unfinished uploads whose expiry has passed; returns how many."""
        if not self.config.expire_after:
            return 0
        removed = 0
        now = self.clock()
        async for upload_id in self.store.list_uploads():
            try:
                info = await self.store.get_info(upload_id)
                if info.is_complete or info.is_final:
                    continue
                if now <= await self.store.last_write_time(upload_id) + self.config.expire_after:
                    continue
                lock = await self.locker.acquire(upload_id, lambda: None, 0.0)
            except (UploadNotFound, LockTimeout, StoreError):
                continue  # gone, or being written right now (so not expired after all)
            try:
                await self.store.terminate(upload_id)
                await self.locker.forget(upload_id)
                removed += 1
            except UploadNotFound:
                continue
            finally:
                await lock.release()
            await self._drop_pending_finals(info)
        return removed


class _Verifier:
    """Checks digests of a chunk as it streams; ``finish`` raises if one does not match.

    A chunk with a verifier is stored all-or-nothing, so a mismatch discards it.
    """

    __slots__ = ("_body", "_checks", "_trailer")

    def __init__(self, body: Body) -> None:
        self._body = body
        #: (digest being computed, expected value, error to raise on mismatch)
        self._checks: list[tuple[Digest, bytes, HTTPError | None]] = []
        self._trailer: dict[str, Digest] | None = None

    def expect(self, digest: Digest, expected: bytes, error: HTTPError | None = None) -> None:
        """Compare ``digest`` (possibly seeded with earlier data) to ``expected`` at the end."""
        self._checks.append((digest, expected, error))

    def expect_checksum_trailer(self) -> None:
        # The algorithm is named only at the end: compute every one we offer.
        self._trailer = {name: factory() for name, factory in ALGORITHMS.items()}

    def update(self, chunk: bytes) -> None:
        for digest, _, _ in self._checks:
            digest.update(chunk)
        if self._trailer is not None:
            for digest in self._trailer.values():
                digest.update(chunk)

    def finish(self) -> None:
        body = self._body
        if body.stopped is not None or body.disconnected:
            raise _ChecksumMismatch  # an incomplete chunk cannot match; discard it
        for digest, expected, error in self._checks:
            if digest.digest() != expected:
                raise error if error is not None else _ChecksumMismatch
        if self._trailer is not None:
            value = (body.trailers() or {}).get("upload-checksum")
            if value is None:
                raise HTTPError(400, "announced Upload-Checksum trailer was not sent")
            checksum = parse_checksum(value, ALGORITHMS)
            if self._trailer[checksum.algorithm].digest() != checksum.digest:
                raise _ChecksumMismatch


class _DirectBody(DirectSource):
    """A body the store may have write itself into a file (see DirectSource)."""

    __slots__ = ("_body",)

    def __init__(self, body: Body) -> None:
        self._body = body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._body.__aiter__()

    async def write_into(self, fd: int) -> int:
        return await self._body.write_into(fd)


async def _guarded(body: AsyncIterable[bytes], limit: int, verifier: _Verifier | None) -> AsyncIterator[bytes]:
    """The body, cut at ``limit`` bytes (-1: none), verified at its end when asked."""
    received = 0
    async for chunk in body:
        received += len(chunk)
        if 0 <= limit < received:
            keep = len(chunk) - (received - limit)
            if keep > 0:
                chunk = chunk[:keep]
                if verifier is not None:
                    verifier.update(chunk)
                yield chunk
            raise _TooLarge
        if verifier is not None:
            verifier.update(chunk)
        yield chunk
    if verifier is not None:
        verifier.finish()


async def _no_bytes() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover


def _media_type(content_type: str | None) -> str:
    """The media type without parameters, lower-cased (media type names are case-insensitive)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _announces_checksum_trailer(headers: Mapping[str, str]) -> bool:
    return "upload-checksum" in (name.strip() for name in headers.get("trailer", "").lower().split(","))


def _has_body(headers: Mapping[str, str]) -> bool:
    length = headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in (headers.get("transfer-encoding") or "").lower()


class _HookRejection(HTTPError):
    """A hook's rejection: its status, headers and body reach the client as the hook chose them."""

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes | None) -> None:
        super().__init__(status, reason, headers)
        self.body = body


def _rejection(answer: HookResponse, default_status: int, default_reason: str) -> HTTPError:
    status = answer.status if answer.status and 400 <= answer.status <= 599 else default_status
    headers = [(k.lower(), v) for k, v in answer.headers.items() if _safe_header(k, v)]
    body = answer.body.encode("utf-8", "surrogateescape") if answer.body else None
    return _HookRejection(status, answer.body or default_reason, headers, body)


#: Headers a hook may not set on a success response: the protocol's own.
_PROTOCOL_HEADERS = frozenset({
    "location", "upload-offset", "upload-length", "upload-expires", "upload-metadata", "upload-concat",
    "upload-defer-length", "tus-resumable", "content-length", "transfer-encoding", "connection",
})  # fmt: skip


def _success_headers(answer: HookResponse) -> Headers:
    """The headers a pre-create or pre-finish hook adds to a success response (as tusd merges them)."""
    allowed = answer.headers.items()
    return [(k.lower(), v) for k, v in allowed if _safe_header(k, v) and k.lower() not in _PROTOCOL_HEADERS]


def _raise_if_rejected(answer: HookResponse, rejected: bool, default_status: int, reason: str) -> None:
    if rejected or (answer.status is not None and answer.status >= 400):
        raise _rejection(answer, default_status, reason)


def _safe_header(name: str, value: str) -> bool:
    return name.isascii() and name.replace("-", "").isalnum() and all(0x20 <= ord(c) < 0x7F for c in value)


def _canonical(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
