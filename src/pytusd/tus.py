"""tus 1.0.0 requests: headers in, upload service calls, headers out.

The rules are in :mod:`pytusd.protocol.tus`; creating, writing, finishing and terminating are the
upload service's. What is left here is which headers each method reads and answers with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from pytusd.hooks.base import HookRequest
from pytusd.hooks.translate import hook_request
from pytusd.info import UploadInfo
from pytusd.messages import Body, Headers, Request, Response
from pytusd.protocol import download, tus
from pytusd.protocol.checksum import ALGORITHMS
from pytusd.protocol.errors import HTTPError
from pytusd.protocol.forwarded import origin_of
from pytusd.protocol.headers import (
    Checksum,
    content_length,
    has_body,
    http_date,
    media_type,
    parse_metadata,
    parse_non_negative_int,
)
from pytusd.protocol.urls import parse_concat, upload_path
from pytusd.receiving import Verifier
from pytusd.uploads import UploadService, WriteResult


class TusProtocol:
    """Serves tus requests for one upload service."""

    def __init__(self, service: UploadService) -> None:
        self.service = service
        self.config = service.config
        self.extensions = tus.extensions(service.store.features, service.config)
        self.allow = tus.upload_methods(termination=service.can_terminate, download=service.can_download)

    async def handle(self, request: Request, method: str, upload_id: str) -> Response:
        tus.check_version(method, request.headers)
        if upload_id == "":
            if method == "POST":
                return await self.create(request)
            raise HTTPError(405, "method not allowed", [("allow", "POST, OPTIONS")])
        if method == "HEAD":
            return await self.head(request, upload_id)
        if method == "PATCH":
            return await self.append(request, upload_id)
        if method == "DELETE" and self.service.can_terminate:
            await self.service.terminate(upload_id, hook_request(request))
            return Response(204)
        if method == "GET" and self.service.can_download:
            return await self.download(request, upload_id)
        raise HTTPError(405, "method not allowed", [("allow", self.allow)])

    def options(self, request: Request) -> Response:
        headers = tus.options_headers(
            self.extensions, max_size=self.config.max_size, trailers=request.body.can_read_trailers
        )
        return Response(200, headers)

    # -- HEAD ---------------------------------------------------------------------------------

    async def head(self, request: Request, upload_id: str) -> Response:
        info, expires = await self.service.inspect(upload_id, hook_request(request))
        headers = tus.head_headers(info, self.config.base_path)
        if expires is not None:
            # When the last write was, not now: a HEAD does not keep an upload alive.
            headers.append(("upload-expires", http_date(expires)))
        return Response(200, headers)

    # -- POST ---------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        service = self.service
        headers = request.headers
        # Before anything is created: a request whose Host is unusable leaves nothing behind.
        origin = origin_of(headers, request.scheme, request.server_host, behind_proxy=self.config.behind_proxy)
        concat = None
        if "upload-concat" in headers:
            if not service.can_concatenate:
                raise HTTPError(400, "concatenation is disabled")
            concat = parse_concat(headers["upload-concat"], self.config.base_path, origin)
        info = UploadInfo(id="", metadata=parse_metadata(headers.get("upload-metadata")), created_at=service.clock())
        partials: list[UploadInfo] = []
        if concat is not None and concat.is_final:
            if "upload-length" in headers or "upload-defer-length" in headers:
                raise HTTPError(400, "a final upload must not carry Upload-Length or Upload-Defer-Length")
            partials = await service.load_partials(concat.partial_ids)
            info.is_final = True
            info.partial_uploads = list(concat.partial_ids)
            info.upload_concat = concat.received
            sizes = [p.size for p in partials]
            info.size = None if None in sizes else sum(s for s in sizes if s is not None)
        else:
            info.size = tus.creation_length(headers, can_defer=service.can_defer_length)
            info.is_partial = concat is not None
        service.check_size(info.size)

        with_body = has_body(headers)
        if with_body and media_type(headers.get("content-type")) != tus.OFFSET_OCTET_STREAM:
            # Creation with upload, as PATCH: a body of any other type is refused, not dropped.
            raise HTTPError(415, f"Content-Type must be {tus.OFFSET_OCTET_STREAM}")
        if with_body and info.is_final:
            raise HTTPError(403, "a final upload cannot carry data")
        checksum = tus.upload_checksum(headers) if with_body else None
        declared = content_length(headers) if with_body else None
        if declared is not None and info.size is not None and declared > info.size:
            raise HTTPError(413, "body is longer than Upload-Length")

        hooked = hook_request(request)
        info, hook_headers = await service.create(info, hooked, partials)
        location = origin + upload_path(self.config.base_path, info.id)
        response_headers: Headers = [("location", location), *hook_headers]
        if with_body:
            async with service.locked(info.id, request.body):
                result = await self._receive(request, info, hooked, checksum, declared)
            info = result.info
            response_headers += result.headers
            if result.error is not None:
                # The upload exists: tell the client where, so it can resume.
                result.error.headers += [("location", location), ("upload-offset", str(info.offset))]
                raise result.error
        elif info.is_complete:
            # Complete when created (empty, or a final joined at once): finished like any other, so
            # pre-finish may refuse it and post-finish (and the finished count) follows, as in tusd.
            result = await service.finish(info, hooked)
            response_headers += result.headers
            if result.error is not None:
                result.error.headers += [("location", location), ("upload-offset", str(info.offset))]
                raise result.error
        if not info.is_final or info.is_complete:
            response_headers.append(("upload-offset", str(info.offset)))
        self._expires_header(info, response_headers)
        return Response(201, response_headers)

    # -- PATCH --------------------------------------------------------------------------------

    async def append(self, request: Request, upload_id: str) -> Response:
        service = self.service
        headers = request.headers
        if media_type(headers.get("content-type")) != tus.OFFSET_OCTET_STREAM:
            raise HTTPError(415, f"Content-Type must be {tus.OFFSET_OCTET_STREAM}")
        offset = parse_non_negative_int(headers.get("upload-offset"), "Upload-Offset")
        length_header = headers.get("upload-length")
        new_length = parse_non_negative_int(length_header, "Upload-Length") if length_header else None
        checksum = tus.upload_checksum(headers)
        declared = content_length(headers)
        hooked = hook_request(request)

        async with service.open(upload_id, request.body, hooked, offset=offset) as info:
            if info.is_final:
                raise HTTPError(403, "a final upload cannot be modified")
            service.expect_offset(info, offset)
            if new_length is not None:
                await service.declare_length(info, new_length)
            result = await self._receive(request, info, hooked, checksum, declared)
        info = result.info
        if result.error is not None:
            result.error.headers.append(("upload-offset", str(info.offset)))
            raise result.error
        await service.after_write(info)
        response_headers: Headers = [("upload-offset", str(info.offset)), *result.headers]
        self._expires_header(info, response_headers)
        return Response(204, response_headers)

    async def _receive(
        self, request: Request, info: UploadInfo, hooked: HookRequest, checksum: Checksum | None, declared: int | None
    ) -> WriteResult:
        """The body into the upload (lock held by the caller), verified when a checksum was sent."""
        return await self.service.receive(
            info,
            request.body,
            hooked,
            self._verifier(request, checksum),
            content_length=declared,
            body_check=_unannounced_trailer,
        )

    def _verifier(self, request: Request, checksum: Checksum | None) -> Verifier | None:
        """Upload-Checksum as a header, or announced as a trailer where trailers can be read."""
        if checksum is not None:
            verifier = Verifier(request.body)
            verifier.expect(ALGORITHMS[checksum.algorithm](), checksum.digest)
            return verifier
        if tus.announces_checksum_trailer(request.headers) and request.body.can_read_trailers:
            verifier = Verifier(request.body)
            verifier.expect_checksum_trailer()
            return verifier
        return None

    def _expires_header(self, info: UploadInfo, headers: Headers) -> None:
        expires = self.service.expires_at(info)
        if expires is not None:
            headers.append(("upload-expires", http_date(expires)))

    # -- GET ----------------------------------------------------------------------------------

    async def download(self, request: Request, upload_id: str) -> Response:
        info = await self.service.find(upload_id, hook_request(request), check_expiry=False)
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
        body: AsyncIterator[bytes] = self.service.read(upload_id, start, end) if end > start else _no_bytes()
        return Response(status, headers, body)


def _unannounced_trailer(body: Body, verifier: Verifier | None) -> HTTPError | None:
    """A checksum trailer nobody announced was not held back: the chunk is stored, unverified."""
    if verifier is None and "upload-checksum" in (body.trailers() or {}):
        reason = "an Upload-Checksum trailer must be announced in a Trailer header; the chunk was kept unverified"
        return HTTPError(400, reason)
    return None


async def _no_bytes() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover
