"""Hooks sent to a gRPC server, as tusd's gRPC hooks (``-hooks-grpc``).

Each event is one ``proto.HookHandler/InvokeHook`` call with tusd's messages (``proto/hook.proto``,
copied from tusd), so a hook server written for tusd answers pytusd unchanged. As in tusd:

- ``retries`` is the number of attempts (tusd's ``-hooks-grpc-retry`` feeds go-grpc-middleware's
  ``WithMax``, which counts attempts; 0 means one), ``backoff`` seconds apart; only UNAVAILABLE and
  RESOURCE_EXHAUSTED are retried (go-grpc-middleware's default codes);
- ``forward_headers`` are sent as call metadata (lowercase keys, the first value);
- the request's ``header`` map holds the first value of each header; an empty map in
  ``changeFileInfo`` means "no change" (Go cannot tell empty from absent there either);
- tusd's proto has no ``RejectTermination``: a gRPC hook cannot refuse a termination.

pytusd's own: ``timeout`` bounds each attempt (tusd sets none; a hanging hook server must not hold
uploads forever); a timed-out attempt is retried like an unavailable server.

Needs ``grpcio`` and ``protobuf`` (``pip install pytusd[hooks]``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytusd.hooks.base import DEFAULT_EVENTS, HookError, HookEvent, HookRequest, HookResponse
from pytusd.hooks.runner import HookRunner, Retryable, with_retries
from pytusd.info import UploadInfo

if TYPE_CHECKING:
    import grpc.aio

    from pytusd.hooks.proto import hook_pb2

logger = logging.getLogger("pytusd.hooks")

#: tusd's service and method (package ``proto``).
METHOD = "/proto.HookHandler/InvokeHook"


class GrpcHooks(HookRunner):
    """A gRPC server implementing tusd's ``HookHandler`` service, receiving every enabled event.

    ``secure`` needs ``server_certificate`` (a PEM file with the server's certificate or its CA);
    ``client_certificate`` and ``client_key`` together add mutual TLS.
    """

    kind = "gRPC hook"
    invalid_status = 502

    def __init__(
        self,
        endpoint: str,
        events: Iterable[HookEvent | str] = DEFAULT_EVENTS,
        *,
        retries: int = 3,
        backoff: float = 1.0,
        timeout: float | None = 15.0,
        secure: bool = False,
        server_certificate: str = "",
        client_certificate: str = "",
        client_key: str = "",
        forward_headers: Sequence[str] = (),
        progress_interval: float = 1.0,
    ) -> None:
        try:
            import grpc  # noqa: F401  (fail now, not at the first upload)

            from pytusd.hooks.proto import hook_pb2  # noqa: F401
        except ImportError as exc:
            raise ValueError(f"gRPC hooks need grpcio and protobuf: pip install 'pytusd[hooks]' ({exc})") from None
        if not endpoint.strip():
            raise ValueError("gRPC hook endpoint is empty")
        if retries < 0 or backoff < 0 or (timeout is not None and timeout <= 0):
            raise ValueError("retries and backoff must be >= 0, the timeout > 0")
        super().__init__(events, progress_interval=progress_interval, timeout=None)
        self.endpoint = endpoint.strip()
        self.attempts = max(retries, 1)
        self.backoff = backoff
        self.call_timeout = timeout
        self.forward_headers = tuple(h.lower() for h in forward_headers if h)
        for name in self.forward_headers:
            # gRPC metadata keys; "-bin" keys would need bytes, and "grpc-" ones are reserved.
            if not re.fullmatch(r"[0-9a-z_.\-]+", name) or name.endswith("-bin") or name.startswith("grpc-"):
                raise ValueError(f"header cannot be forwarded as gRPC metadata: {name!r}")
        self._credentials: tuple[bytes, bytes | None, bytes | None] | None = None
        if secure:
            if not server_certificate:
                raise ValueError(
                    "--hooks-grpc-secure needs the gRPC server's TLS certificate (--hooks-grpc-server-tls-certificate)"
                )
            key = chain = None
            if client_certificate and client_key:  # tusd: mutual TLS only with both
                chain, key = Path(client_certificate).read_bytes(), Path(client_key).read_bytes()
            self._credentials = (Path(server_certificate).read_bytes(), key, chain)
        self._channel: grpc.aio.Channel | None = None
        self._channel_loop: asyncio.AbstractEventLoop | None = None

    def _call(self) -> grpc.aio.UnaryUnaryMultiCallable[hook_pb2.HookRequest, hook_pb2.HookResponse]:
        import grpc.aio

        from pytusd.hooks.proto import hook_pb2

        loop = asyncio.get_running_loop()
        if self._channel is None or self._channel_loop is not loop:
            # A channel belongs to the loop it was made on (tests run several loops in one process).
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self.endpoint)
            else:
                root, key, chain = self._credentials
                credentials = grpc.ssl_channel_credentials(root, key, chain)
                self._channel = grpc.aio.secure_channel(self.endpoint, credentials)
            self._channel_loop = loop
        return self._channel.unary_unary(
            METHOD,
            request_serializer=hook_pb2.HookRequest.SerializeToString,
            response_deserializer=hook_pb2.HookResponse.FromString,
        )

    async def aclose(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and self._channel_loop is asyncio.get_running_loop():
            await channel.close()

    async def invoke(self, event: HookEvent, info: UploadInfo, request: HookRequest) -> HookResponse:
        message = to_message(event, info, request)
        metadata = []
        for name in self.forward_headers:
            value = request.header(name)
            if value:
                metadata.append((name, value))
        return await with_retries(
            lambda: self._attempt(event, message, tuple(metadata)),
            attempts=self.attempts,  # tusd's -hooks-grpc-retry counts attempts
            backoff=self.backoff,
            what=f"{event} gRPC hook",
        )

    async def _attempt(
        self, event: HookEvent, message: hook_pb2.HookRequest, metadata: tuple[tuple[str, str], ...]
    ) -> HookResponse:
        import grpc

        try:
            answer = await self._call()(message, timeout=self.call_timeout, metadata=metadata or None)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise Retryable(HookError(f"{event} gRPC hook timed out after {self.call_timeout:g}s", 504)) from None
            error = HookError(f"{event} gRPC hook failed: {code.name}", 502)
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                raise Retryable(error) from None
            raise error from None
        return from_message(answer)


def to_message(event: HookEvent, info: UploadInfo, request: HookRequest) -> hook_pb2.HookRequest:
    """tusd's ``marshal``: the same fields as the JSON form (pre-create sees no ID and no Storage)."""
    from pytusd.hooks.proto import hook_pb2

    pre_create = event == HookEvent.PRE_CREATE
    upload = hook_pb2.FileInfo(
        id="" if pre_create else info.id,
        size=info.size if info.size is not None else 0,
        sizeIsDeferred=info.size is None,
        offset=info.offset,
        metaData=dict(info.metadata),
        isPartial=info.is_partial,
        isFinal=info.is_final,
        partialUploads=list(info.partial_uploads) if info.is_final else [],
        storage={} if pre_create else dict(info.storage or {}),
    )
    http = hook_pb2.HTTPRequest(
        method=request.method,
        uri=request.uri,
        remoteAddr=request.remote_addr,
        header={name: values[0] for name, values in request.headers.items() if name and values},
    )
    return hook_pb2.HookRequest(type=str(event), event=hook_pb2.Event(upload=upload, httpRequest=http))


def from_message(answer: Any) -> HookResponse:
    """tusd's ``unmarshal``; zero values mean "not set", as in Go."""
    response = HookResponse(reject_upload=bool(answer.rejectUpload), stop_upload=bool(answer.stopUpload))
    if answer.HasField("httpResponse"):
        http = answer.httpResponse
        response.status = int(http.statusCode) or None
        response.body = http.body or None
        response.headers = dict(http.header)
    if answer.HasField("changeFileInfo"):
        changes = answer.changeFileInfo
        response.change_id = changes.id or None
        response.change_metadata = dict(changes.metaData) or None
        response.change_storage = dict(changes.storage) or None
    return response
