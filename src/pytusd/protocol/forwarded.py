"""The scheme and host a client used, for absolute ``Location`` URLs."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pytusd.protocol.errors import bad_request

_HOST = re.compile(r"([A-Za-z0-9\-.]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(:[0-9]{1,5})?")
_FORWARDED_PAIR = re.compile(r'\s*(host|proto)\s*=\s*("[^"]*"|[^;,\s]*)', re.IGNORECASE)


def origin_of(headers: Mapping[str, str], default_scheme: str, default_host: str | None, *, behind_proxy: bool) -> str:
    """``scheme://host`` for building URLs; a Host that is not a host name is a 400."""
    scheme, host = default_scheme, headers.get("host") or default_host
    if behind_proxy:
        forwarded = headers.get("forwarded")
        if forwarded:
            first = forwarded.split(",", 1)[0]
            for match in _FORWARDED_PAIR.finditer(first):
                key, value = match.group(1).lower(), match.group(2).strip('"')
                if key == "host" and value:
                    host = value
                elif key == "proto" and value.lower() in ("http", "https"):
                    scheme = value.lower()
        else:
            if fwd_host := headers.get("x-forwarded-host"):
                host = fwd_host.split(",", 1)[0].strip()
            proto = (headers.get("x-forwarded-proto") or "").split(",", 1)[0].strip().lower()
            if proto in ("http", "https"):
                scheme = proto
    if not host:
        raise bad_request("missing Host header")
    if not _HOST.fullmatch(host):
        raise bad_request("invalid Host header")
    return f"{scheme}://{host}"
