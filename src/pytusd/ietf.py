"""IETF "Resumable Uploads for HTTP" requests (interop versions 3 to 8) on the tus endpoint.

A draft upload is stored like a tus upload whose length may be deferred: ``Upload-Complete: ?1``
on a fully received body fixes the length at the offset reached. So a tus client and a draft
client see the same uploads, and stores need nothing new. The rules are in
:mod:`pytusd.protocol.ietf`; the shared steps are the upload service's.
"""

from __future__ import annotations

from pytusd.hooks.base import HookRequest
from pytusd.hooks.translate import hook_request
from pytusd.info import UploadInfo
from pytusd.messages import Headers, Request, Response
from pytusd.protocol import ietf
from pytusd.protocol.errors import HTTPError
from pytusd.protocol.forwarded import origin_of
from pytusd.protocol.headers import content_length, has_body
from pytusd.protocol.urls import upload_path
from pytusd.receiving import Verifier
from pytusd.stores.base import StoreError, StoreUnavailable
from pytusd.uploads import ProgressSender, UploadService, WriteResult


class IetfProtocol:
    """The draft's creation, offset retrieval, append and cancellation on the upload service."""

    def __init__(self, service: UploadService) -> None:
        self.service = service
        self.config = service.config

    async def handle(self, request: Request, method: str, upload_id: str, version: int) -> Response:
        if upload_id == "":
            if method in ("POST", "PUT", "PATCH"):
                return await self.create(request, version)
            raise HTTPError(405, "method not allowed", [("allow", "POST, PUT, PATCH, OPTIONS")])
        get = ietf.retrieves_offset_with_get(version)
        if method == "HEAD" or (method == "GET" and get):
            return await self.head(request, upload_id, version)
        if method == "PATCH":
            return await self.append(request, upload_id, version)
        if method == "DELETE" and self.service.can_terminate:
            await self.service.terminate(upload_id, hook_request(request))
            return Response(204)
        allow = ["HEAD", "GET"] if get else ["HEAD"]
        allow += ["PATCH", "DELETE", "OPTIONS"] if self.service.can_terminate else ["PATCH", "OPTIONS"]
        raise HTTPError(405, "method not allowed", [("allow", ", ".join(allow))])

    def options_headers(self, version: int) -> Headers:
        headers: Headers = []
        limit = self._limit(version, int(self.config.expire_after) if self.config.expire_after else None)
        if limit:
            headers.append(("upload-limit", limit))
        if version >= 8:
            headers.append(("accept-patch", ietf.PARTIAL_UPLOAD))
        return headers

    def _limit(self, version: int, max_age: int | None) -> str | None:
        return ietf.upload_limit(version, max_size=self.config.max_size, max_age=max_age)

    def _state_headers(self, info: UploadInfo, version: int, expires: float | None) -> Headers:
        """The upload's state; ``expires``: when it expires (None: never), as the caller knows it
        (after a write, a full lifetime: asking the store again would cost S3 requests)."""
        headers: Headers = [("upload-offset", str(info.offset)), *ietf.complete_headers(info.is_complete, version)]
        length = info.size if info.size is not None else info.declared_length
        if length is not None:
            headers.append(("upload-length", str(length)))
        max_age = None if expires is None else max(0, int(expires - self.service.clock()))
        limit = self._limit(version, max_age)
        if limit:
            headers.append(("upload-limit", limit))
        return headers

    # -- creation -----------------------------------------------------------------------------

    async def create(self, request: Request, version: int) -> Response:
        service = self.service
        headers = request.headers
        complete = ietf.require_complete(headers, version)
        length = ietf.declared_length(headers, complete, offset=0)
        service.check_size(length)

        info = UploadInfo(id="", metadata=ietf.metadata(headers), created_at=service.clock())
        if length is not None:
            if ietf.completes_at_length(version):
                info.size = length
            else:
                info.declared_length = length
        origin = origin_of(headers, request.scheme, request.server_host, behind_proxy=self.config.behind_proxy)
        hooked = hook_request(request)
        info, _ = await service.create(info, hooked)
        location = origin + upload_path(self.config.base_path, info.id)

        interim = request.send_interim
        if interim is not None:
            # The upload exists before its body is read: the client can resume from here on.
            announce: Headers = [("location", location), ("upload-draft-interop-version", str(version))]
            lifetime = int(self.config.expire_after) if self.config.expire_after else None  # all of it is ahead
            limit = self._limit(version, lifetime)
            if limit:
                announce.append(("upload-limit", limit))
            await interim(104, announce)

        async with service.locked(info.id, request.body):
            result = await self._receive(request, info, hooked, complete, version)
        info = result.info
        state = self._state_headers(info, version, service.expires_at(info))
        if result.error is not None:
            result.error.headers += [("location", location), *state]
            raise result.error
        return Response(201, [("location", location), *state])

    # -- offset retrieval ---------------------------------------------------------------------

    async def head(self, request: Request, upload_id: str, version: int) -> Response:
        # The draft: offset retrieval ends an append still in flight (one that stalled: see pytusd.handover),
        # so the offset it reports is settled. A GET gets the same answer, without content: the
        # editors' copy gives content no meaning.
        info, expires = await self.service.settled(upload_id, hook_request(request))
        return Response(204, [*self._state_headers(info, version, expires), ("cache-control", "no-store")])

    # -- append -------------------------------------------------------------------------------

    async def append(self, request: Request, upload_id: str, version: int) -> Response:
        service = self.service
        headers = request.headers
        ietf.require_partial_upload(headers, version)
        offset = ietf.parse_integer(headers.get("upload-offset"))
        if offset is None:
            raise HTTPError(400, "missing or invalid Upload-Offset header")
        complete = ietf.require_complete(headers, version)
        hooked = hook_request(request)

        async with service.open(upload_id, request.body, hooked, offset=offset) as info:
            try:
                service.expect_offset(info, offset)
            except HTTPError as exc:
                exc.headers += ietf.complete_headers(info.is_complete, version)
                raise
            if info.is_complete or info.is_final:
                if has_body(headers):
                    raise HTTPError(400, "upload is already complete", problem_type=ietf.INCONSISTENT_LENGTH)
                if not complete:
                    raise HTTPError(400, "upload is already complete", problem_type=ietf.COMPLETED_UPLOAD)
                # An empty append that marks as complete what already is: nothing to change.
                return Response(204, self._state_headers(info, version, service.expires_at(info)))
            length = ietf.declared_length(headers, complete, offset=offset)
            if length is not None:
                known = info.size if info.size is not None else info.declared_length
                if known is not None and known != length:
                    raise HTTPError(400, "inconsistent upload length", problem_type=ietf.INCONSISTENT_LENGTH)
                service.check_size(length)
                if known is None:
                    if ietf.completes_at_length(version):
                        await service.declare_length(info, length)
                    else:
                        await service.announce_length(info, length)
            result = await self._receive(request, info, hooked, complete, version)
        info = result.info
        if result.error is not None:
            result.error.headers += self._state_headers(info, version, service.expires_at(info))
            raise result.error
        await service.after_write(info)
        return Response(204, self._state_headers(info, version, service.expires_at(info)))

    # -- shared -------------------------------------------------------------------------------

    async def _receive(
        self, request: Request, info: UploadInfo, hooked: HookRequest, complete: bool, version: int
    ) -> WriteResult:
        """The body into the upload (lock held by the caller), with digests and progress 104s."""
        return await self.service.receive(
            info,
            request.body,
            hooked,
            await self._verifier(request, info, complete),
            content_length=content_length(request.headers),
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

    async def _verifier(self, request: Request, info: UploadInfo, complete: bool) -> Verifier | None:
        """Content-Digest always; Repr-Digest when this request completes the representation."""
        content = ietf.parse_digest(request.headers.get("content-digest"))
        whole = ietf.parse_digest(request.headers.get("repr-digest")) if complete else None
        verifier = None
        if content is not None:
            verifier = Verifier(request.body)
            mismatch = HTTPError(400, "Content-Digest does not match the content")
            verifier.expect(ietf.DIGEST_ALGORITHMS[content.algorithm](), content.value, mismatch)
        if whole is not None:
            verifier = verifier or Verifier(request.body)
            digest = ietf.DIGEST_ALGORITHMS[whole.algorithm]()
            if info.offset:
                # The representation began in earlier requests: hash what is stored first.
                try:
                    async for block in self.service.read(info.id, 0, info.offset):
                        digest.update(block)
                except StoreUnavailable:
                    raise
                except StoreError:
                    # S3 cannot read back the parts of an unfinished multipart upload.
                    raise HTTPError(501, "Repr-Digest cannot be verified here: the stored part is unreadable") from None
            verifier.expect(digest, whole.value, HTTPError(400, "Repr-Digest does not match the representation"))
        return verifier
