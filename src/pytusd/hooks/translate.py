"""Between HTTP and hooks: a request as hooks see it, and hook answers as responses.

tusd lets a hook's answer reach the client (status, headers, body) when it rejects something, and
lets pre-create and pre-finish hooks add headers to a success response. The rules for which of
those may pass live here once, for both protocol front ends and the upload service.
"""

from __future__ import annotations

from pytusd.hooks.base import HookRequest, HookResponse
from pytusd.messages import Headers, Request
from pytusd.protocol.errors import HTTPError

#: Headers a hook may not set on a success response: the protocol's own.
_PROTOCOL_HEADERS = frozenset({
    "location", "upload-offset", "upload-length", "upload-expires", "upload-metadata", "upload-concat",
    "upload-defer-length", "tus-resumable", "content-length", "transfer-encoding", "connection",
})  # fmt: skip


class RejectedByHook(HTTPError):
    """A hook's rejection: its status, headers and body reach the client as the hook chose them."""

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes | None, cause: str = "") -> None:
        super().__init__(status, reason, headers)
        self.body = body
        #: what was rejected, whatever the hook wrote (e.g. "upload rejected by a pre-create hook")
        self.cause = cause or reason


def hook_request(request: Request) -> HookRequest:
    """The request as tusd's hooks see it: Go's canonical header names, every value kept."""
    uri = request.path + (f"?{request.query}" if request.query else "")
    return HookRequest(request.method, uri, request.client_addr, raw=request.raw_headers)


def rejection(answer: HookResponse, default_status: int, default_reason: str) -> HTTPError:
    """The error a rejecting hook answer becomes: the hook's status (4xx/5xx), headers and body."""
    status = answer.status if answer.status and 400 <= answer.status <= 599 else default_status
    headers = [(k.lower(), v) for k, v in answer.headers.items() if _safe_header(k, v)]
    body = answer.body.encode("utf-8", "surrogateescape") if answer.body else None
    return RejectedByHook(status, answer.body or default_reason, headers, body, default_reason)


def raise_if_rejected(answer: HookResponse, rejected: bool, default_status: int, reason: str) -> None:
    """Raise the hook's rejection when it rejected, or answered with an error status."""
    if rejected or (answer.status is not None and answer.status >= 400):
        raise rejection(answer, default_status, reason)


def success_headers(answer: HookResponse) -> Headers:
    """The headers a pre-create or pre-finish hook adds to a success response (as tusd merges them)."""
    allowed = answer.headers.items()
    return [(k.lower(), v) for k, v in allowed if _safe_header(k, v) and k.lower() not in _PROTOCOL_HEADERS]


def _safe_header(name: str, value: str) -> bool:
    return name.isascii() and name.replace("-", "").isalnum() and all(0x20 <= ord(c) < 0x7F for c in value)
