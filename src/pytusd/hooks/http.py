"""Hooks POSTed as JSON to a URL, as tusd's HTTP hooks (``-hooks-http``).

Each event is one ``POST`` of the hook request JSON (``Content-Type: application/json``), with the
client's headers named in ``forward_headers`` copied onto it (``Authorization``, ``Cookie``, ...).
A 2xx answer's body, if not empty, is the hook response JSON. A network error, a timeout or a 5xx
answer is retried ``retries`` times, ``backoff`` seconds apart (tusd's defaults: 3 and 1 s); any
other status is a failure at once. A blocking hook's failure fails the request with 502 (504 for a
timeout); a non-blocking hook's failure is logged.

Needs ``httpx`` (``pip install pytusd[hooks]``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pytusd.hooks.base import (
    DEFAULT_EVENTS,
    HookError,
    HookEvent,
    HookRequest,
    HookResponse,
    InvalidHookResponse,
    hook_input,
)
from pytusd.hooks.runner import HookRunner, Retryable, with_retries
from pytusd.info import UploadInfo

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger("pytusd.hooks")

#: tusd's default limit on a hook response body (``-hooks-http-size-limit``).
DEFAULT_SIZE_LIMIT = 5 * 1024


#: Headers that describe the hook request itself; forwarding the client's would corrupt it.
_NOT_FORWARDED = frozenset({"content-type", "content-length", "host", "transfer-encoding", "connection", "expect"})


class HttpHooks(HookRunner):
    """An HTTP(S) endpoint receiving every enabled event.

    ``timeout`` bounds each attempt (all events: a hanging endpoint must not pile up requests),
    ``size_limit`` the response body; ``forward_headers`` are request header names to copy.
    """

    kind = "HTTP hook"
    invalid_status = 502

    def __init__(
        self,
        endpoint: str,
        events: Iterable[HookEvent | str] = DEFAULT_EVENTS,
        *,
        forward_headers: Sequence[str] = (),
        retries: int = 3,
        backoff: float = 1.0,
        timeout: float = 15.0,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        progress_interval: float = 1.0,
        verify: bool = True,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"hook endpoint must be an http:// or https:// URL, not {endpoint!r}")
        try:
            import httpx  # noqa: F401  (fail now, not at the first upload)
        except ImportError:  # pragma: no cover - httpx is a test dependency
            raise ValueError("HTTP hooks need httpx: pip install 'pytusd[hooks]'") from None
        if retries < 0 or backoff < 0 or timeout <= 0 or size_limit <= 0:
            raise ValueError("retries and backoff must be >= 0, timeout and size limit > 0")
        # The timeout is httpx's, per attempt; the runner's own limit stays off.
        super().__init__(events, progress_interval=progress_interval, timeout=None)
        self.endpoint = endpoint
        self.forward_headers = tuple(h for h in forward_headers if h and h.lower() not in _NOT_FORWARDED)
        for name in self.forward_headers:
            if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name):
                raise ValueError(f"invalid header name to forward: {name!r}")
        self.retries = retries
        self.backoff = backoff
        self.http_timeout = timeout
        self.size_limit = size_limit
        #: False: any certificate is accepted (--hooks-http-skip-verify).
        self.verify = verify
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        import httpx

        from pytusd import __version__

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.http_timeout),
                follow_redirects=False,
                verify=self.verify,
                headers={"user-agent": f"pytusd/{__version__}"},
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.aclose()

    async def invoke(self, event: HookEvent, info: UploadInfo, request: HookRequest) -> HookResponse:
        body = json.dumps(hook_input(event, info, request)).encode()
        headers: list[tuple[str, str]] = []
        for name in self.forward_headers:
            wanted = name.lower()
            for key, values in request.headers.items():
                if key.lower() == wanted:
                    headers += [(name, value) for value in values]
        headers.append(("content-type", "application/json"))
        return await with_retries(
            lambda: self._attempt(event, body, headers),
            attempts=self.retries + 1,  # tusd's -hooks-http-retry counts retries
            backoff=self.backoff,
            what=f"{event} HTTP hook",
        )

    async def _attempt(self, event: HookEvent, body: bytes, headers: list[tuple[str, str]]) -> HookResponse:
        import httpx

        try:
            async with self._http().stream("POST", self.endpoint, content=body, headers=headers) as response:
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > self.size_limit:
                        raise InvalidHookResponse(f"body is larger than {self.size_limit} bytes")
                status = response.status_code
        except httpx.TimeoutException:
            raise Retryable(HookError(f"{event} HTTP hook timed out after {self.http_timeout:g}s", 504)) from None
        except httpx.TransportError as exc:
            reason = f"{event} HTTP hook endpoint unreachable ({type(exc).__name__})"
            raise Retryable(HookError(reason, 502)) from None
        if status >= 500:
            raise Retryable(HookError(f"{event} HTTP hook endpoint answered {status}", 502))
        if not 200 <= status < 300:
            raise HookError(f"{event} HTTP hook endpoint answered {status}", 502)
        if not bytes(data).strip():
            return HookResponse()
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise InvalidHookResponse("body is not JSON") from None
        return HookResponse.from_json(document)
