"""IETF "Resumable Uploads for HTTP" requests (interop versions 3 to 8) on the tus endpoint.

A draft upload is stored like a tus upload whose length may be deferred: ``Upload-Complete: ?1``
on a fully received body fixes the length at the offset reached. So a tus client and a draft
client see the same uploads, and stores need nothing new.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pytusd.info import UploadInfo
from pytusd.messages import Headers, Request, Response
from pytusd.protocol import ietf
from pytusd.protocol.errors import HTTPError, bad_request
from pytusd.protocol.forwarded import origin_of
from pytusd.protocol.headers import parse_metadata
from pytusd.protocol.urls import upload_path
from pytusd.stores.base import StoreError

if TYPE_CHECKING:
    from pytusd.handler import ProgressSender, UploadHandler, _Verifier, _WriteResult
    from pytusd.hooks.base import HookRequest

_FILENAME = re.compile(r"""filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))""", re.IGNORECASE)


class DraftProtocol:
    """The draft's creation, offset retrieval, append and cancellation on top of the handler."""

    def __init__(self, handler: UploadHandler) -> None:
        self.handler = handler

    async def handle(self, request: Request, method: str, upload_id: str, version: int) -> Response:
        if upload_id == "":
            if method in ("POST", "PUT", "PATCH"):
                return await self._create(request, version)
            raise HTTPError(405, "method not allowed", [("allow", "POST, PUT, PATCH, OPTIONS")])
        if method == "HEAD":
            return await self._head(request, upload_id, version)
        if method == "PATCH":
            return await self._append(request, upload_id, version)
        if method == "DELETE" and "termination" in self.handler.extensions:
            return await self.handler._delete(request, upload_id)
        raise HTTPError(405, "method not allowed", [("allow", "HEAD, PATCH, DELETE, OPTIONS")])

    def options_headers(self, version: int) -> Headers:
        headers: Headers = []
        limit = self._limit(version, None)
        if limit:
            headers.append(("upload-limit", limit))
        if version >= 8:
            headers.append(("accept-patch", ietf.PARTIAL_UPLOAD))
        return headers

    def _limit(self, version: int, info: UploadInfo | None, last_write: float | None = None) -> str | None:
        """Upload-Limit; ``max-age`` is the lifetime left (from the last write) of ``info``."""
        config = self.handler.config
        max_age = None
        if config.expire_after and (info is None or not info.is_complete):
            max_age = int(config.expire_after)
            if last_write is not None:
                max_age = max(0, int(last_write + config.expire_after - self.handler.clock()))
        return ietf.upload_limit(version, max_size=config.max_size, max_age=max_age)

    async def _state_headers(self, info: UploadInfo, version: int) -> Headers:
        headers: Headers = [("upload-offset", str(info.offset)), *ietf.complete_headers(info.is_complete, version)]
        length = info.size if info.size is not None else info.declared_length
        if length is not None:
            headers.append(("upload-length", str(length)))
        last_write = None
        if self.handler.config.expire_after and not info.is_complete:
            last_write = await self.handler.store.last_write_time(info.id)
        limit = self._limit(version, info, last_write)
        if limit:
            headers.append(("upload-limit", limit))
        return headers

    # -- creation -----------------------------------------------------------------------------

    async def _create(self, request: Request, version: int) -> Response:
        handler = self.handler
        headers = request.headers
        complete = ietf.upload_complete(headers, version)
        if complete is None:
            name = "Upload-Incomplete" if version == 3 else "Upload-Complete"
            raise bad_request(f"missing or invalid {name} header")
        length = _declared_length(headers, complete, offset=0)
        if handler.config.max_size and length is not None and length > handler.config.max_size:
            raise HTTPError(413, "upload is larger than the server allows")

        info = UploadInfo(id="", metadata=_metadata(headers), created_at=handler.clock())
        _set_length(info, length, version)
        origin = origin_of(headers, request.scheme, request.server_host, behind_proxy=handler.config.behind_proxy)
        hook_request = handler._hook_request(request)
        info = await handler._create_with_hooks(info, hook_request)
        location = origin + upload_path(handler.config.base_path, info.id)

        interim = request.send_interim
        limit = self._limit(version, None)  # a new upload: its whole lifetime is ahead
        if interim is not None:
            # The upload exists before its body is read: the client can resume from here on.
            announce: Headers = [("location", location), ("upload-draft-interop-version", str(version))]
            if limit:
                announce.append(("upload-limit", limit))
            await interim(104, announce)

        lock = await handler._lock(info.id, request.body)
        try:
            result = await self._receive(request, info, hook_request, complete, version)
        finally:
            await lock.release()
        info = result.info
        if result.error is not None:
            result.error.headers += [("location", location), *await self._state_headers(info, version)]
            raise result.error
        response_headers: Headers = [("location", location), *await self._state_headers(info, version)]
        return Response(201, response_headers)

    # -- offset retrieval ---------------------------------------------------------------------

    async def _head(self, request: Request, upload_id: str, version: int) -> Response:
        handler = self.handler
        # The draft: offset retrieval ends an append still in flight, so the offset is settled.
        lock = await handler._lock(upload_id, None)
        try:
            info = await handler.store.get_info(upload_id)
        finally:
            await lock.release()
        await handler._authorize(request, info)
        await handler._check_expired(info)
        headers = [*await self._state_headers(info, version), ("cache-control", "no-store")]
        return Response(204, headers)

    # -- append -------------------------------------------------------------------------------

    async def _append(self, request: Request, upload_id: str, version: int) -> Response:
        handler = self.handler
        headers = request.headers
        if version >= 6 and (headers.get("content-type") or "").split(";")[0].strip().lower() != ietf.PARTIAL_UPLOAD:
            raise HTTPError(415, f"Content-Type must be {ietf.PARTIAL_UPLOAD}")
        offset = ietf.parse_integer(headers.get("upload-offset"))
        if offset is None:
            raise bad_request("missing or invalid Upload-Offset header")
        complete = ietf.upload_complete(headers, version)
        if complete is None:
            name = "Upload-Incomplete" if version == 3 else "Upload-Complete"
            raise bad_request(f"missing or invalid {name} header")
        hook_request = handler._hook_request(request)

        lock = await handler._lock(upload_id, request.body)
        try:
            info = await handler.store.get_info(upload_id)
            await handler._authorize(request, info)
            await handler._check_expired(info)
            if offset != info.offset:
                raise HTTPError(
                    409,
                    "Upload-Offset does not match the upload's offset",
                    [("upload-offset", str(info.offset)), *ietf.complete_headers(info.is_complete, version)],
                    problem_type=ietf.MISMATCHING_OFFSET,
                    extra={"expected-offset": info.offset, "provided-offset": offset},
                )
            has_content = _has_content(headers)
            if info.is_complete or info.is_final:
                if has_content:
                    raise HTTPError(400, "upload is already complete", problem_type=ietf.INCONSISTENT_LENGTH)
                if not complete:
                    raise HTTPError(400, "upload is already complete", problem_type=ietf.COMPLETED_UPLOAD)
                # An empty append that marks as complete what already is: nothing to change.
                return Response(204, await self._state_headers(info, version))
            length = _declared_length(headers, complete, offset=offset)
            if length is not None:
                known = info.size if info.size is not None else info.declared_length
                if known is not None and known != length:
                    raise HTTPError(400, "inconsistent upload length", problem_type=ietf.INCONSISTENT_LENGTH)
                if handler.config.max_size and length > handler.config.max_size:
                    raise HTTPError(413, "upload is larger than the server allows")
                if known is None:
                    if _completes_at_length(version):
                        await handler._declare_length(info, length)
                    else:
                        info.declared_length = length
                        await handler.store.update_info(info)
            result = await self._receive(request, info, hook_request, complete, version)
        finally:
            await lock.release()
        info = result.info
        if result.error is not None:
            result.error.headers += await self._state_headers(info, version)
            raise result.error
        if info.is_complete and info.pending_finals:
            await handler._finish_pending_finals(info)
        return Response(204, await self._state_headers(info, version))

    # -- shared -------------------------------------------------------------------------------

    async def _receive(
        self, request: Request, info: UploadInfo, hook_request: HookRequest, complete: bool, version: int
    ) -> _WriteResult:
        """The body into the upload (lock held by the caller), with digests and progress 104s."""
        return await self.handler._receive(
            request,
            info,
            hook_request,
            await self._verifier(request, info, complete),
            complete_on_end=complete,
            progress=self._progress(request, version),
        )

    def _progress(self, request: Request, version: int) -> ProgressSender | None:
        interim = request.send_interim
        if interim is None or version < 5:
            return None  # progress 104s arrived with interop version 5 (draft -03)

        async def send(offset: int) -> None:
            await interim(104, [("upload-offset", str(offset)), ("upload-draft-interop-version", str(version))])

        return send

    async def _verifier(self, request: Request, info: UploadInfo, complete: bool) -> _Verifier | None:
        """Content-Digest always; Repr-Digest when this request completes the representation."""
        from pytusd.handler import _Verifier

        content = ietf.parse_digest(request.headers.get("content-digest"))
        whole = ietf.parse_digest(request.headers.get("repr-digest")) if complete else None
        verifier = None
        if content is not None:
            verifier = _Verifier(request.body)
            mismatch = HTTPError(400, "Content-Digest does not match the content")
            verifier.expect(ietf.DIGEST_ALGORITHMS[content.algorithm](), content.value, mismatch)
        if whole is not None:
            verifier = verifier or _Verifier(request.body)
            digest = ietf.DIGEST_ALGORITHMS[whole.algorithm]()
            if info.offset:
                # The representation began in earlier requests: hash what is stored first.
                try:
                    async for block in self.handler.store.read(info.id, 0, info.offset):
                        digest.update(block)
                except StoreError:
                    # S3 cannot read back the parts of an unfinished multipart upload.
                    raise HTTPError(501, "Repr-Digest cannot be verified here: the stored part is unreadable") from None
            verifier.expect(digest, whole.value, HTTPError(400, "Repr-Digest does not match the representation"))
        return verifier


def _completes_at_length(version: int) -> bool:
    """Whether reaching the announced length completes an upload (up to interop version 6).

    From version 7 the text is explicit that only ``Upload-Complete: ?1`` completes an upload.
    Up to 6 we let the length decide too: tus-js-client's draft modes (versions 5 and 6) never send
    ``?1`` for file sources, and their uploads would otherwise never finish.
    """
    return version <= 6


def _set_length(info: UploadInfo, length: int | None, version: int) -> None:
    if length is None:
        return
    if _completes_at_length(version):
        info.size = length
    else:
        info.declared_length = length


def _declared_length(headers: Mapping[str, str], complete: bool, *, offset: int) -> int | None:
    """The length a request declares: ``Upload-Length`` and/or ``Upload-Complete: ?1`` + Content-Length."""
    get = headers.get
    from_header = ietf.parse_integer(get("upload-length"))
    from_content = None
    if complete:
        content_length = get("content-length")
        if content_length is not None and content_length.isdigit():
            from_content = offset + int(content_length)
    if from_header is not None and from_content is not None and from_header != from_content:
        raise HTTPError(400, "Upload-Length and the content disagree", problem_type=ietf.INCONSISTENT_LENGTH)
    length = from_header if from_header is not None else from_content
    if length is not None and length < offset:
        raise HTTPError(400, "Upload-Length is smaller than the offset", problem_type=ietf.INCONSISTENT_LENGTH)
    return length


def _has_content(headers: Mapping[str, str]) -> bool:
    length = headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in (headers.get("transfer-encoding") or "").lower()


def _metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """tus-style Upload-Metadata if sent (tus-js-client does), plus the name and type HTTP carries."""
    get = headers.get
    metadata = parse_metadata(get("upload-metadata"))
    content_type = (get("content-type") or "").strip()
    if content_type and content_type.split(";")[0].strip() not in (
        ietf.PARTIAL_UPLOAD,
        "application/offset+octet-stream",
    ):
        metadata.setdefault("filetype", content_type)
    disposition = get("content-disposition")
    if disposition:
        match = _FILENAME.search(disposition)
        if match:
            name = match.group(1) if match.group(1) is not None else match.group(2)
            metadata.setdefault("filename", name.replace('\\"', '"'))
    return metadata
