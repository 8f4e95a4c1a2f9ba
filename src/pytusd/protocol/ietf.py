"""Pure rules of the IETF "Resumable Uploads for HTTP" draft, interop versions 3 to 8.

A request is a draft request when it carries ``Upload-Draft-Interop-Version``. Every draft header
is a Structured Field (RFC 9651, parsed by ``http_sf``): one that does not parse, or has the wrong
type, is ignored as a whole, as the draft requires.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import http_sf

from pytusd.protocol.errors import COMPLETED_UPLOAD as COMPLETED_UPLOAD
from pytusd.protocol.errors import INCONSISTENT_LENGTH as INCONSISTENT_LENGTH
from pytusd.protocol.errors import MISMATCHING_OFFSET as MISMATCHING_OFFSET
from pytusd.protocol.errors import HTTPError, bad_request
from pytusd.protocol.headers import OFFSET_OCTET_STREAM, media_type, parse_metadata

SUPPORTED_VERSIONS = frozenset(range(3, 9))
#: The largest SF Integer (RFC 9651 3.3.1): larger limits (a max size of a petabyte and more) are
#: announced as this, which http_sf can serialize; a client never gets that far anyway.
SF_INTEGER_MAX = 10**15 - 1
LATEST_VERSION = 8
PARTIAL_UPLOAD = "application/partial-upload"

_FILENAME = re.compile(r"""filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))""", re.IGNORECASE)


#: RFC 9530 digest algorithms we verify (names from the IANA registry).
DIGEST_ALGORITHMS: dict[str, Callable[[], Any]] = {
    "sha-256": hashlib.sha256,
    "sha-512": hashlib.sha512,
}


def _item(value: str | None) -> Any:
    """The bare value of an SF item, or None if absent or unparseable."""
    if value is None:
        return None
    try:
        parsed: Any = http_sf.parse(value.encode("latin-1"), tltype="item")
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError):
        return None
    return parsed[0]


def parse_version(value: str | None) -> int | None:
    """The interop version, None when the header is absent or unparseable (then: tus)."""
    version = _item(value)
    if type(version) is not int:
        return None
    if version not in SUPPORTED_VERSIONS:
        raise HTTPError(400, "unsupported Upload-Draft-Interop-Version (this server speaks 3 to 8)")
    return version


def retrieves_offset_with_get(version: int) -> bool:
    """Whether GET on an upload resource retrieves its offset, as HEAD does.

    The editors' copy after -11 ("Describe GET requests against upload resource") defines it, still
    as interop version 8; -11 and earlier leave GET to the server, which downloads as for tus.
    """
    return version >= 8


def unversioned_is_draft(method: str, headers: Mapping[str, str]) -> bool:
    """Whether a request with neither ``Tus-Resumable`` nor ``Upload-Draft-Interop-Version`` is a
    client of the coming RFC (served by the latest draft's rules) rather than a tus request that
    lacks its version (412).

    An RFC client sends no version header. Creation and append carry ``Upload-Complete``, an append
    ``application/partial-upload``; offset retrieval (HEAD) and cancellation (DELETE) carry nothing
    of the kind, but a tus client never sends them without ``Tus-Resumable``. A request whose
    version header is present but does not parse stays tus (a draft client we cannot read), and a
    body typed ``application/offset+octet-stream`` is tus' whatever else the request says.
    """
    if "tus-resumable" in headers or "upload-draft-interop-version" in headers:
        return False
    content_type = media_type(headers.get("content-type"))
    if content_type == OFFSET_OCTET_STREAM:
        return False
    if method in ("HEAD", "DELETE") or parse_boolean(headers.get("upload-complete")) is not None:
        return True
    return method == "PATCH" and content_type == PARTIAL_UPLOAD


def parse_boolean(value: str | None) -> bool | None:
    item = _item(value)
    return item if type(item) is bool else None


def parse_integer(value: str | None) -> int | None:
    """A non-negative SF Integer; anything else is ignored (None)."""
    item = _item(value)
    return item if type(item) is int and item >= 0 else None


def upload_complete(headers: Mapping[str, str], version: int) -> bool | None:
    """The completeness a request declares: ``Upload-Complete`` (v4+), ``Upload-Incomplete`` (v3)."""
    if version == 3:
        incomplete = parse_boolean(headers.get("upload-incomplete"))
        return None if incomplete is None else not incomplete
    return parse_boolean(headers.get("upload-complete"))


def require_complete(headers: Mapping[str, str], version: int) -> bool:
    """:func:`upload_complete`, which creation and append requests must carry (else a 400)."""
    complete = upload_complete(headers, version)
    if complete is None:
        name = "Upload-Incomplete" if version == 3 else "Upload-Complete"
        raise bad_request(f"missing or invalid {name} header")
    return complete


def completes_at_length(version: int) -> bool:
    """Whether reaching the announced length completes an upload (up to interop version 6).

    From version 7 the text is explicit that only ``Upload-Complete: ?1`` completes an upload.
    Up to 6 we let the length decide too: tus-js-client's draft modes (versions 5 and 6) never send
    ``?1`` for file sources, and their uploads would otherwise never finish.
    """
    return version <= 6


def declared_length(headers: Mapping[str, str], complete: bool, *, offset: int) -> int | None:
    """The length a request declares: ``Upload-Length`` and/or ``Upload-Complete: ?1`` + Content-Length."""
    get = headers.get
    from_header = parse_integer(get("upload-length"))
    from_content = None
    if complete:
        content_length = get("content-length")
        if content_length is not None and content_length.isascii() and content_length.isdigit():  # not '²'
            from_content = offset + int(content_length)
    if from_header is not None and from_content is not None and from_header != from_content:
        raise HTTPError(400, "Upload-Length and the content disagree", problem_type=INCONSISTENT_LENGTH)
    length = from_header if from_header is not None else from_content
    if length is not None and length < offset:
        raise HTTPError(400, "Upload-Length is smaller than the offset", problem_type=INCONSISTENT_LENGTH)
    return length


def require_partial_upload(headers: Mapping[str, str], version: int) -> None:
    """Appends carry ``application/partial-upload`` from interop version 6 (a 415 otherwise)."""
    if version >= 6 and media_type(headers.get("content-type")) != PARTIAL_UPLOAD:
        raise HTTPError(415, f"Content-Type must be {PARTIAL_UPLOAD}")


def metadata(headers: Mapping[str, str]) -> dict[str, str]:
    """tus-style Upload-Metadata if sent (tus-js-client does), plus the name and type HTTP carries."""
    get = headers.get
    result = parse_metadata(get("upload-metadata"))
    content_type = (get("content-type") or "").strip()
    if content_type and content_type.split(";")[0].strip() not in (PARTIAL_UPLOAD, OFFSET_OCTET_STREAM):
        result.setdefault("filetype", content_type)
    disposition = get("content-disposition")
    if disposition:
        match = _FILENAME.search(disposition)
        if match:
            name = match.group(1) if match.group(1) is not None else match.group(2)
            result.setdefault("filename", name.replace('\\"', '"'))
    return result


def complete_headers(complete: bool, version: int) -> list[tuple[str, str]]:
    if version == 3:
        return [("upload-incomplete", "?0" if complete else "?1")]
    return [("upload-complete", "?1" if complete else "?0")]


def upload_limit(version: int, *, max_size: int, max_age: int | None) -> str | None:
    """``Upload-Limit`` (from interop version 6); ``max-age`` was called ``expires`` in version 6."""
    if version < 6:
        return None
    limits: dict[str, Any] = {}
    if max_size:
        limits["max-size"] = min(max_size, SF_INTEGER_MAX)
    if max_age is not None:
        limits["expires" if version == 6 else "max-age"] = min(max(max_age, 0), SF_INTEGER_MAX)
    if not limits and version >= 8:
        limits["min-size"] = 0  # the editors' copy: a server without limits says so explicitly
    return http_sf.ser(limits) if limits else None


def uses_problem_types(version: int) -> bool:
    """Problem documents arrived with interop version 6 (draft -04)."""
    return version >= 6


def problem_body(error: HTTPError) -> bytes:
    """An RFC 9457 problem document for ``error`` (its ``problem_type`` must be set)."""
    document: dict[str, Any] = {"type": error.problem_type, "title": error.reason}
    document.update(error.extra)
    return json.dumps(document).encode()


@dataclass(frozen=True, slots=True)
class Digest:
    """One expected RFC 9530 digest: algorithm and raw bytes."""

    algorithm: str
    value: bytes


def parse_digest(value: str | None) -> Digest | None:
    """The strongest supported digest in a ``Content-Digest``/``Repr-Digest`` dictionary.

    A dictionary with none of our algorithms is ignored (RFC 9530 lets a recipient ignore
    algorithms it does not support); one that does not parse is ignored as a whole.
    """
    if value is None:
        return None
    try:
        parsed: Any = http_sf.parse(value.encode("latin-1"), tltype="dictionary")
    except (http_sf.StructuredFieldError, UnicodeEncodeError, ValueError):
        return None
    for name in ("sha-512", "sha-256"):
        member = parsed.get(name)
        if member is not None and isinstance(member[0], bytes):
            return Digest(name, member[0])
    return None


def format_digest(algorithm: str, value: bytes) -> str:
    return f"{algorithm}=:{base64.b64encode(value).decode('ascii')}:"
