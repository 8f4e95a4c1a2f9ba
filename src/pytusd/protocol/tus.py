"""Pure rules of tus 1.0.0: versions, extensions, creation lengths, checksums, concatenation.

Functions of headers and upload info, no I/O: the tus front end (:mod:`pytusd.tus`) calls them and
the upload service does the rest.
"""

from __future__ import annotations

from collections.abc import Mapping

from pytusd.config import Config
from pytusd.info import UploadInfo
from pytusd.protocol.checksum import ALGORITHM_LIST, ALGORITHMS
from pytusd.protocol.errors import HTTPError, bad_request
from pytusd.protocol.headers import OFFSET_OCTET_STREAM as OFFSET_OCTET_STREAM
from pytusd.protocol.headers import Checksum, format_metadata, parse_checksum, parse_non_negative_int
from pytusd.protocol.urls import Concat, format_concat

TUS_VERSION = "1.0.0"


def extensions(store_features: frozenset[str], config: Config) -> list[str]:
    """What ``Tus-Extension`` announces: what the store can do, less what the config disables.

    ``checksum-trailer`` is added per request, where the web server passes trailers on.
    """
    result = ["creation", "creation-with-upload"]
    if "creation-defer-length" in store_features:
        result.append("creation-defer-length")
    if config.expire_after:
        result.append("expiration")
    result.append("checksum")
    if "termination" in store_features and not config.disable_termination:
        result.append("termination")
    if "concatenation" in store_features and not config.disable_concatenation:
        result += ["concatenation", "concatenation-unfinished"]
    return result


def options_headers(extension_list: list[str], *, max_size: int, trailers: bool) -> list[tuple[str, str]]:
    """The headers of an OPTIONS answer (tus' discovery)."""
    announced = [*extension_list, "checksum-trailer"] if trailers else extension_list
    headers = [
        ("tus-version", TUS_VERSION),
        ("tus-extension", ",".join(announced)),
        ("tus-checksum-algorithm", ALGORITHM_LIST),
    ]
    if max_size:
        headers.append(("tus-max-size", str(max_size)))
    return headers


def check_version(method: str, headers: Mapping[str, str]) -> None:
    """Every request but OPTIONS and GET must carry ``Tus-Resumable: 1.0.0`` (412 otherwise)."""
    if method not in ("OPTIONS", "GET") and headers.get("tus-resumable") != TUS_VERSION:
        raise HTTPError(412, "unsupported or missing Tus-Resumable version", [("tus-version", TUS_VERSION)])


def creation_length(headers: Mapping[str, str], *, can_defer: bool) -> int | None:
    """``Upload-Length``, or None for ``Upload-Defer-Length: 1`` (exactly one of them)."""
    length = headers.get("upload-length")
    deferred = headers.get("upload-defer-length")
    if length is not None and deferred is not None:
        raise bad_request("Upload-Length and Upload-Defer-Length are mutually exclusive")
    if deferred is not None:
        if deferred.strip() != "1":
            raise bad_request("invalid Upload-Defer-Length header: must be 1")
        if not can_defer:
            raise bad_request("deferred lengths are not supported")
        return None
    if length is None:
        raise bad_request("missing Upload-Length or Upload-Defer-Length header")
    return parse_non_negative_int(length, "Upload-Length")


def upload_checksum(headers: Mapping[str, str]) -> Checksum | None:
    """The ``Upload-Checksum`` header, if sent."""
    value = headers.get("upload-checksum")
    return parse_checksum(value, ALGORITHMS) if value is not None else None


def announces_checksum_trailer(headers: Mapping[str, str]) -> bool:
    """``Trailer: Upload-Checksum``: the checksum follows the body (checksum-trailer)."""
    return "upload-checksum" in (name.strip() for name in headers.get("trailer", "").lower().split(","))


def concat_header(info: UploadInfo, base_path: str) -> str | None:
    """``Upload-Concat`` of a partial or final upload (None for a plain one), as received.

    The stored value was validated when received; it is checked again for being one printable
    line, since an info file may have been written by something else.
    """
    if info.is_partial:
        return format_concat(Concat(is_partial=True), base_path)
    if info.is_final:
        kept = info.upload_concat
        if kept is not None and kept.startswith("final;") and kept.isascii() and kept.isprintable():
            return kept
        return format_concat(Concat(is_partial=False, partial_ids=tuple(info.partial_uploads)), base_path)
    return None


def head_headers(info: UploadInfo, base_path: str) -> list[tuple[str, str]]:
    """What HEAD tells about an upload; an unfinished final upload has no offset yet."""
    headers = [("cache-control", "no-store")]
    if not info.is_final or info.is_complete:
        headers.append(("upload-offset", str(info.offset)))
    if info.size is not None:
        headers.append(("upload-length", str(info.size)))
    elif not info.is_final:
        headers.append(("upload-defer-length", "1"))
    if info.metadata:
        headers.append(("upload-metadata", format_metadata(info.metadata)))
    concat = concat_header(info, base_path)
    if concat:
        headers.append(("upload-concat", concat))
    return headers


def upload_methods(*, termination: bool, download: bool) -> str:
    """``Allow`` for an upload's URL."""
    methods = ["HEAD", "PATCH", "OPTIONS"]
    if termination:
        methods.append("DELETE")
    if download:
        methods.append("GET")
    return ", ".join(methods)
