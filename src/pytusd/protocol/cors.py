"""CORS: what browsers running tus-js-client or Uppy need, after tusd's defaults."""

from __future__ import annotations

import re

ALLOW_METHODS = "POST, HEAD, PATCH, OPTIONS, GET, DELETE"
ALLOW_HEADERS = (
    "Authorization, Origin, X-Requested-With, X-Request-ID, X-HTTP-Method-Override, Content-Type, "
    "Upload-Length, Upload-Offset, Tus-Resumable, Upload-Metadata, Upload-Defer-Length, Upload-Concat, "
    "Upload-Complete, Upload-Incomplete, Upload-Draft-Interop-Version, Upload-Checksum, "
    "Content-Digest, Repr-Digest"
)
EXPOSE_HEADERS = (
    "Upload-Offset, Location, Upload-Length, Tus-Version, Tus-Resumable, Tus-Max-Size, Tus-Extension, "
    "Upload-Metadata, Upload-Defer-Length, Upload-Concat, Upload-Complete, Upload-Incomplete, Upload-Limit, "
    "Upload-Expires, Upload-Draft-Interop-Version, Tus-Checksum-Algorithm"
)
#: scheme://host[:port] and nothing else; anything else is never echoed.
_ORIGIN = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?|null")


class CorsPolicy:
    def __init__(self, allow_origin: str | None, *, credentials: bool = False, max_age: int = 86400) -> None:
        self._pattern = re.compile(allow_origin) if allow_origin is not None else None
        self._credentials = credentials
        self._max_age = str(max_age)

    def allowed(self, origin: str | None) -> bool:
        if self._pattern is None or not origin or len(origin) > 300:
            return False
        return bool(_ORIGIN.fullmatch(origin)) and bool(self._pattern.fullmatch(origin))

    def headers(self, origin: str, *, preflight: bool) -> list[tuple[str, str]]:
        headers = [("access-control-allow-origin", origin), ("vary", "Origin")]
        if self._credentials:
            headers.append(("access-control-allow-credentials", "true"))
        if preflight:
            headers += [
                ("access-control-allow-methods", ALLOW_METHODS),
                ("access-control-allow-headers", ALLOW_HEADERS),
                ("access-control-max-age", self._max_age),
            ]
        else:
            headers.append(("access-control-expose-headers", EXPOSE_HEADERS))
        return headers
