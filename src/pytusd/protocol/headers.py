"""Parsing and formatting of tus request and response headers.

Every parser is strict: a value that is not exactly what the text allows raises a 400 with a
reason that names the header but never repeats the value (values are attacker-controlled).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate

from pytusd.protocol.errors import HTTPError, bad_request

#: Largest offset or length accepted: what a signed 64-bit integer holds, as tusd.
MAX_INT64 = 2**63 - 1
#: Upload-Metadata limits: generous for real clients (Uppy sends every field), bounded for memory.
MAX_METADATA_HEADER = 64 * 1024
MAX_METADATA_PAIRS = 256

#: The media type of tus PATCH bodies (draft clients of interop version 3-5 may send it too).
OFFSET_OCTET_STREAM = "application/offset+octet-stream"

_DIGITS = re.compile(r"[0-9]{1,19}")
_METADATA_KEY = re.compile(r"[!-+\--~]+")  # visible ASCII without space and comma
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_CHECKSUM_ALGORITHM = re.compile(r"[a-z0-9-]{1,32}")


def parse_non_negative_int(value: str | None, header: str) -> int:
    """A non-negative decimal integer that fits in 63 bits: no sign, spaces, or exponent."""
    if value is None:
        raise bad_request(f"missing {header} header")
    if not _DIGITS.fullmatch(value):
        raise bad_request(f"invalid {header} header: expected a non-negative integer")
    number = int(value)
    if number > MAX_INT64:
        raise bad_request(f"invalid {header} header: too large")
    return number


def media_type(content_type: str | None) -> str:
    """The media type without parameters, lower-cased (media type names are case-insensitive)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def has_body(headers: Mapping[str, str]) -> bool:
    """Whether a request announces content: a non-zero Content-Length, or chunked framing."""
    length = headers.get("content-length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in (headers.get("transfer-encoding") or "").lower()


def content_length(headers: Mapping[str, str]) -> int | None:
    """The request's Content-Length (None: the body's length is not announced)."""
    declared = headers.get("content-length")
    return None if declared is None else parse_non_negative_int(declared, "Content-Length")


def parse_metadata(value: str | None) -> dict[str, str]:
    """Decode ``Upload-Metadata``: comma-separated ``key base64value`` pairs (value optional).

    Values are decoded to ``str`` with ``surrogateescape`` so binary values survive a JSON round
    trip byte for byte; :func:`format_metadata` re-encodes them. An empty header is accepted
    (tuspy sends one when there is no metadata).
    """
    if value is None:
        return {}
    if len(value) > MAX_METADATA_HEADER:
        raise HTTPError(400, "Upload-Metadata header is too large")
    result: dict[str, str] = {}
    if not value.strip():
        return result
    pairs = value.split(",")
    if len(pairs) > MAX_METADATA_PAIRS:
        raise HTTPError(400, "Upload-Metadata header has too many keys")
    for pair in pairs:
        parts = pair.strip(" ").split(" ")
        if len(parts) > 2 or not parts[0]:
            raise bad_request("invalid Upload-Metadata header: expected 'key base64value' pairs")
        key = parts[0]
        if not _METADATA_KEY.fullmatch(key):
            raise bad_request("invalid Upload-Metadata header: a key has characters outside visible ASCII")
        if key in result:
            raise bad_request("invalid Upload-Metadata header: duplicate key")
        encoded = parts[1] if len(parts) == 2 else ""
        if not _BASE64.fullmatch(encoded):
            raise bad_request("invalid Upload-Metadata header: a value is not base64")
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("invalid Upload-Metadata header: a value is not base64") from None
        result[key] = decoded.decode("utf-8", "surrogateescape")
    return result


def format_metadata(metadata: Mapping[str, str]) -> str:
    """Encode metadata for a response; always freshly base64-encoded, never echoed raw."""
    parts = []
    for key, value in metadata.items():
        if not _METADATA_KEY.fullmatch(key):
            continue  # a key from a hook or a foreign store that a header cannot carry
        raw = value.encode("utf-8", "surrogateescape")
        parts.append(f"{key} {base64.b64encode(raw).decode('ascii')}" if raw else key)
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class Checksum:
    algorithm: str
    digest: bytes


def parse_checksum(value: str, supported: Mapping[str, object]) -> Checksum:
    """``Upload-Checksum: ALGO BASE64``; an algorithm the server lacks is a 400 (tus text)."""
    parts = value.strip(" ").split(" ")
    if len(parts) != 2:
        raise bad_request("invalid Upload-Checksum header: expected 'algorithm base64digest'")
    algorithm, encoded = parts
    if not _CHECKSUM_ALGORITHM.fullmatch(algorithm):
        raise bad_request("invalid Upload-Checksum header: bad algorithm name")
    if algorithm not in supported:
        raise bad_request("unsupported checksum algorithm")
    if not encoded or not _BASE64.fullmatch(encoded):
        raise bad_request("invalid Upload-Checksum header: digest is not base64")
    try:
        digest = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("invalid Upload-Checksum header: digest is not base64") from None
    return Checksum(algorithm, digest)


def http_date(timestamp: float) -> str:
    """An RFC 9110 IMF-fixdate, as ``Upload-Expires`` requires."""
    return formatdate(timestamp, usegmt=True)
