"""Safe download headers (tusd's rules) and Range parsing for GET."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

#: Types served inline; anything else is an attachment so a browser never renders it in our origin.
INLINE_TYPES = frozenset(
    {
        "text/plain", "image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp",
        "audio/wave", "audio/wav", "audio/x-wav", "audio/x-pn-wav", "audio/webm", "audio/ogg",
        "video/mp4", "video/webm", "video/ogg", "application/ogg",
    }
)  # fmt: skip

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE = re.compile(rf"({_TOKEN})/({_TOKEN})(\s*;\s*{_TOKEN}=({_TOKEN}|\"[^\"\\\x00-\x1f\x7f]*\"))*")


def content_headers(metadata: Mapping[str, str]) -> list[tuple[str, str]]:
    """Content-Type, Content-Disposition and nosniff for a download of an upload."""
    filetype = metadata.get("filetype") or metadata.get("type") or ""
    media = _MEDIA_TYPE.fullmatch(filetype.strip())
    content_type = media.group(0) if media else "application/octet-stream"
    essence = f"{media.group(1)}/{media.group(2)}".lower() if media else ""
    disposition = "inline" if essence in INLINE_TYPES else "attachment"
    filename = metadata.get("filename") or metadata.get("name") or ""
    if filename:
        disposition += _filename_params(filename)
    return [
        ("content-type", content_type),
        ("content-disposition", disposition),
        ("x-content-type-options", "nosniff"),
    ]


def _filename_params(filename: str) -> str:
    """RFC 6266: an ASCII fallback ``filename`` plus ``filename*`` for anything else."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())
    if not name:
        return ""
    ascii_name = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\' else "_" for ch in name)
    params = f'; filename="{ascii_name}"'
    if ascii_name != name:
        encoded = quote(name.encode("utf-8", "surrogateescape"), safe="!#$&+-.^_`|~")
        params += f"; filename*=UTF-8''{encoded}"
    return params


class RangeNotSatisfiable(Exception):
    pass


_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """One byte range as ``(start, end_exclusive)``; None to send everything.

    Multiple ranges and malformed values are ignored (RFC 9110 allows that); a well-formed range
    that starts past the end raises :class:`RangeNotSatisfiable`.
    """
    if not value:
        return None
    match = _RANGE.fullmatch(value.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if len(first) > 19 or len(last) > 19:
        return None
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable
        if size == 0:
            return None  # satisfiable (RFC 9110 14.1.1) but no byte to send: the whole, empty, as 200
        return max(size - suffix, 0), size
    start = int(first)
    end = int(last) + 1 if last else size
    if last and end <= start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    return start, min(end, size)
