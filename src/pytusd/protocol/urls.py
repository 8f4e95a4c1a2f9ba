"""Upload IDs, upload URLs and the ``Upload-Concat`` header.

An ID is the single thing that crosses from URLs into stores, so it is validated here once, for
every source (request path, concatenation URL, hook): nothing that could name a path outside the
store, break a URL or a header gets through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, unquote, urlsplit

from pytusd.protocol.errors import HTTPError, bad_request

MAX_ID_LENGTH = 255
#: Longest segment: stores put a segment, plus a suffix of ours, into one file name, and most
#: file systems allow 255 bytes per name (a longer one fails with ENAMETOOLONG, not "not found").
MAX_SEGMENT_LENGTH = 200
#: Names stores keep beside upload data (info files, finals lists, lock and stop files, staged
#: chunks, S3's incomplete part): no segment of an ID may end with one, whoever chose the ID.
RESERVED_ID_SUFFIXES = (".info", ".finals", ".lock", ".stop", ".tmp", ".part")
#: The file store's own directories (temporary files, locks) start with this; no segment may.
RESERVED_ID_PREFIX = ".pytusd"
_ID_CHARS = re.compile(r"[A-Za-z0-9\-._~%!$'()*+,;=/:@]+")
#: Characters left unescaped when an ID is put into a URL path (RFC 3986 pchar and '/').
_URL_SAFE = "/-._~!$'()*+,;=:@"


def is_valid_upload_id(upload_id: str) -> bool:
    """The ID rules of tusd, plus: no empty, ``.`` or ``..`` path segment, no reserved name, no
    segment longer than :data:`MAX_SEGMENT_LENGTH`."""
    if not upload_id or len(upload_id) > MAX_ID_LENGTH or not _ID_CHARS.fullmatch(upload_id):
        return False
    if upload_id.startswith("/") or upload_id.endswith("/"):
        return False
    return all(
        segment not in ("", ".", "..")
        and len(segment) <= MAX_SEGMENT_LENGTH
        and not segment.endswith(RESERVED_ID_SUFFIXES)
        and not segment.startswith(RESERVED_ID_PREFIX)
        for segment in upload_id.split("/")
    )


def upload_path(base_path: str, upload_id: str) -> str:
    """The path of an upload's URL; ``base_path`` ends with '/'."""
    return base_path + quote(upload_id, safe=_URL_SAFE)


def id_from_path(base_path: str, path: str) -> str | None:
    """The upload ID named by a (percent-decoded) request path, or None if it names none.

    ``base_path`` itself (with or without its trailing slash) is the creation endpoint: ''.
    """
    if path == base_path or path + "/" == base_path:
        return ""
    if not path.startswith(base_path):
        return None
    upload_id = path[len(base_path) :]
    return upload_id if is_valid_upload_id(upload_id) else None


@dataclass(frozen=True, slots=True)
class Concat:
    """A parsed ``Upload-Concat``: partial, or final with the IDs it joins in order."""

    is_partial: bool
    partial_ids: tuple[str, ...] = ()
    #: The header as received, once every URL in it named an upload here (URLs as sent, one space
    #: between them): tus wants HEAD to return it so.
    received: str = "partial"

    @property
    def is_final(self) -> bool:
        return not self.is_partial


MAX_CONCAT_PARTS = 1000


_DEFAULT_PORTS = {"http": 80, "https": 443}
#: A URL as it may be stored and returned: visible ASCII only (no controls, no spaces).
_URL_TEXT = re.compile(r"[\x21-\x7e]+")


def parse_concat(value: str, base_path: str, origin: str) -> Concat:
    """Parse ``partial`` or ``final;URL URL ...``.

    A URL names an upload of this server: a path below ``base_path``, or an absolute URL of
    ``origin`` (the ``scheme://host`` the client used, as :func:`~pytusd.protocol.forwarded.origin_of`
    finds it). A URL of another origin is refused rather than resolved by its path: on another
    server that path may name a different upload.
    """
    value = value.strip(" ")
    if value == "partial":
        return Concat(is_partial=True)
    if not value.startswith("final;"):
        raise bad_request("invalid Upload-Concat header: expected 'partial' or 'final;URL ...'")
    urls = value[len("final;") :].split()
    if not urls:
        raise bad_request("invalid Upload-Concat header: a final upload needs partial upload URLs")
    if len(urls) > MAX_CONCAT_PARTS:
        raise bad_request("invalid Upload-Concat header: too many partial uploads")
    ids = []
    for url in urls:
        parts = urlsplit(url)
        if not _URL_TEXT.fullmatch(url) or parts.scheme not in ("", "http", "https") or parts.query or parts.fragment:
            raise bad_request("invalid Upload-Concat header: not an upload URL")
        if (parts.scheme or parts.netloc) and not _same_origin(parts, origin):
            raise bad_request("invalid Upload-Concat header: a URL names another server")
        upload_id = id_from_path(base_path, unquote(parts.path))
        if not upload_id:
            raise HTTPError(400, "invalid Upload-Concat header: a URL does not name an upload on this server")
        ids.append(upload_id)
    return Concat(is_partial=False, partial_ids=tuple(ids), received="final;" + " ".join(urls))


def _same_origin(parts: SplitResult, origin: str) -> bool:
    """Scheme, host and port as in ``origin`` (default ports filled in); no user info."""
    own = urlsplit(origin)
    if not parts.netloc:
        return False
    scheme = parts.scheme or own.scheme  # '//host/path' takes the scheme of the request
    try:
        theirs = (scheme, parts.hostname, _port(parts, scheme))
        ours = (own.scheme, own.hostname, _port(own, own.scheme))
    except ValueError:  # a port out of range
        return False
    return parts.username is None and parts.password is None and theirs == ours


def _port(parts: SplitResult, scheme: str) -> int:
    port = parts.port
    return port if port is not None else _DEFAULT_PORTS[scheme]


def format_concat(concat: Concat | None, base_path: str) -> str | None:
    """``Upload-Concat`` rebuilt from IDs (for uploads stored before the header was kept as received)."""
    if concat is None:
        return None
    if concat.is_partial:
        return "partial"
    return "final;" + " ".join(upload_path(base_path, pid) for pid in concat.partial_ids)
