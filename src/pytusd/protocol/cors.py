"""CORS: what browsers running tus-js-client or Uppy need, after tusd's defaults and flags.

As tusd: a request whose ``Origin`` the policy does not allow is refused with 403 before anything
else happens; a request without one (or with an empty one) is no CORS request. The
``--cors-allow-methods``/``-headers``/``--cors-expose-headers`` lists extend the defaults, as tusd's
do. Unlike tusd, the origin pattern must match the whole origin (tusd's matches anywhere in it, so
``example\\.com`` there also allows ``https://example.com.evil.net``), and an ``Origin`` that is not
``scheme://host[:port]`` or ``null`` is never allowed, so never echoed.
"""

from __future__ import annotations

import re
from typing import Any

from pytusd.config import Config
from pytusd.flags import Flag

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
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

ORIGIN_NOT_ALLOWED = "request origin is not allowed"

CORS_FLAGS: tuple[Flag, ...] = (
    Flag("disable-cors", "bool", False, "send no CORS headers and refuse no origin (CORS handled by a proxy)"),
    Flag(
        "cors-allow-origin", "str", ".*",
        "regular expression a request's whole Origin must match, else 403 ('' disables CORS, as --disable-cors)",
    ),
    Flag("cors-allow-credentials", "bool", False, "send Access-Control-Allow-Credentials: true"),
    Flag("cors-allow-methods", "str", "", "comma-separated methods allowed in preflights besides tus's own"),
    Flag("cors-allow-headers", "str", "", "comma-separated request headers allowed in preflights besides tus's own"),
    Flag("cors-max-age", "int", 86400, "seconds browsers may cache a preflight answer (Access-Control-Max-Age)"),
    Flag("cors-expose-headers", "str", "", "comma-separated response headers exposed to scripts besides tus's own"),
)  # fmt: skip


def _extend(defaults: str, extra: str, flag: str) -> str:
    """tusd's rule: the flag's list is added to the defaults; each item must be a token."""
    items = [item.strip() for item in extra.split(",") if item.strip()]
    for item in items:
        if not _TOKEN.fullmatch(item):
            raise ValueError(f"--{flag}: {item!r} is not a valid name")
    return ", ".join([defaults, *items])


class CorsPolicy:
    """``allow_origin`` None: CORS off (no headers, no 403)."""

    def __init__(
        self,
        allow_origin: str | None,
        *,
        credentials: bool = False,
        max_age: int = 86400,
        allow_methods: str = "",
        allow_headers: str = "",
        expose_headers: str = "",
    ) -> None:
        try:
            self._pattern = re.compile(allow_origin) if allow_origin is not None else None
        except re.error as exc:
            raise ValueError(f"--cors-allow-origin is no valid regular expression: {exc}") from None
        if max_age < 0:
            raise ValueError("--cors-max-age must be >= 0")
        self._credentials = credentials
        self._max_age = str(max_age)
        self._methods = _extend(ALLOW_METHODS, allow_methods, "cors-allow-methods")
        self._allow_headers = _extend(ALLOW_HEADERS, allow_headers, "cors-allow-headers")
        self._expose = _extend(EXPOSE_HEADERS, expose_headers, "cors-expose-headers")

    @property
    def enabled(self) -> bool:
        return self._pattern is not None

    def refuses(self, origin: str | None) -> bool:
        """A CORS request (non-empty Origin) whose origin is not allowed: tusd answers 403."""
        return self.enabled and bool(origin) and not self.allowed(origin)

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
                ("access-control-allow-methods", self._methods),
                ("access-control-allow-headers", self._allow_headers),
                ("access-control-max-age", self._max_age),
            ]
        else:
            headers.append(("access-control-expose-headers", self._expose))
        return headers


def policy_from_config(config: Config) -> CorsPolicy:
    return CorsPolicy(
        config.cors_allow_origin,
        credentials=config.cors_allow_credentials,
        max_age=config.cors_max_age,
        allow_methods=config.cors_allow_methods,
        allow_headers=config.cors_allow_headers,
        expose_headers=config.cors_expose_headers,
    )


def cors_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """:class:`~pytusd.config.Config` keyword arguments from the flags; ValueError if they cannot work."""
    origin = settings["cors_allow_origin"]
    kwargs: dict[str, Any] = {
        "cors_allow_origin": None if settings["disable_cors"] or not origin else origin,
        "cors_allow_credentials": bool(settings["cors_allow_credentials"]),
        "cors_max_age": int(settings["cors_max_age"]),
        "cors_allow_methods": settings["cors_allow_methods"],
        "cors_allow_headers": settings["cors_allow_headers"],
        "cors_expose_headers": settings["cors_expose_headers"],
    }
    policy_from_config(Config(**kwargs))  # fail at startup, not in every worker
    return kwargs
