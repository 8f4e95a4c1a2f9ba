"""Property tests of every header parser (hypothesis; the profile is set in tests/conftest.py).

For each parser: on arbitrary text (control characters, non-ASCII, huge numbers, signs, spaces,
leading zeros) it returns a value within its bounds or raises its documented error - an
:class:`HTTPError` with a 4xx status whose reason never repeats the value - and nothing else;
where a formatter exists, formatting then parsing gives back what was formatted. Header values
the server builds from client input are checked to be sendable: latin-1, no control characters.
"""

from __future__ import annotations

import base64
import email.utils
import re
import string
from collections.abc import Callable
from typing import TypeVar

import http_sf
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from pytusd.config import Config
from pytusd.info import UploadInfo
from pytusd.protocol import ietf, tus
from pytusd.protocol.checksum import ALGORITHMS
from pytusd.protocol.cors import CorsPolicy
from pytusd.protocol.download import RangeNotSatisfiable, content_headers, parse_range
from pytusd.protocol.errors import HTTPError
from pytusd.protocol.forwarded import origin_of
from pytusd.protocol.headers import (
    MAX_INT64,
    MAX_METADATA_HEADER,
    MAX_METADATA_PAIRS,
    content_length,
    format_metadata,
    has_body,
    http_date,
    media_type,
    parse_checksum,
    parse_metadata,
    parse_non_negative_int,
)
from pytusd.protocol.urls import (
    MAX_ID_LENGTH,
    Concat,
    format_concat,
    id_from_path,
    is_valid_upload_id,
    parse_concat,
    upload_path,
)

T = TypeVar("T")
BASE = "/files/"

# -- strategies ---------------------------------------------------------------------------------

#: What a header value can be after the ASGI layer decoded it (latin-1: every byte is a character).
latin1 = st.text(alphabet=st.characters(max_codepoint=0xFF))
#: Control characters, spaces, separators and signs: the characters parsers trip over.
NASTY = "\x00\x01\t\n\r\x1b\x7f \"',;=:/\\+-._%?()[]{}<>@\x85\xa0\xff"
nasty = st.text(alphabet=st.sampled_from(NASTY + string.ascii_letters[:6] + "0189"), max_size=30)
#: Looks like a number, with everything that must not pass for one: signs, spaces, leading zeros,
#: underscores, exponents, non-ASCII digits, more digits than 64 bits hold.
numberish = st.builds(
    lambda sign, zeros, digits, tail: f"{sign}{'0' * zeros}{digits}{tail}",
    st.sampled_from(["", "", "", "+", "-", " ", "\t", "0x", "\u0661"]),
    st.integers(0, 25),
    st.integers(0, 10**40).map(str),
    st.sampled_from(["", "", "", " ", "\t", ".0", "e3", "_0", ",1", "\x00", "\u0665", "\uff15"]),
)
hostile = st.one_of(latin1, st.text(), nasty, numberish)
#: Printable characters a response header may carry (no control characters, latin-1 only).
SENDABLE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def outcome(parse: Callable[[], T]) -> T | HTTPError:
    """The parser's result, or the HTTPError it raised (any other exception fails the test)."""
    try:
        return parse()
    except HTTPError as exc:
        assert 400 <= exc.status < 500, exc.status
        assert exc.reason and "\n" not in exc.reason
        return exc


def assert_not_echoed(error: HTTPError, value: str) -> None:
    """A reason never repeats an attacker's value (short ones, or plain words such as 'Upload-O',
    may coincide with the reason's own text)."""
    value = value.strip()
    if len(value) >= 8 and not re.fullmatch(r"[A-Za-z' :,.-]+", value):
        assert value not in error.reason


def assert_sendable(headers: list[tuple[str, str]]) -> None:
    for name, value in headers:
        assert SENDABLE.fullmatch(value), (name, value)
        value.encode("latin-1")


# -- numbers: Upload-Length, Upload-Offset, Content-Length ----------------------------------------


@given(hostile)
@example("007")
@example(str(MAX_INT64))
@example(str(MAX_INT64 + 1))
@example("0" * 19)
@example("0" * 20)
@example("Upload-O")
def test_non_negative_int_is_plain_digits_within_int64(value: str) -> None:
    result = outcome(lambda: parse_non_negative_int(value, "Upload-Offset"))
    is_number = bool(re.fullmatch(r"[0-9]{1,19}", value, re.ASCII)) and int(value) <= MAX_INT64
    if is_number:
        assert result == int(value)
    else:
        assert isinstance(result, HTTPError) and result.status == 400
        assert_not_echoed(result, value)


@given(st.integers(0, MAX_INT64), st.integers(0, 5))
def test_non_negative_int_round_trips(number: int, zeros: int) -> None:
    text = "0" * zeros + str(number)
    expected: int | type[HTTPError] = number if len(text) <= 19 else HTTPError
    result = outcome(lambda: parse_non_negative_int(text, "Upload-Length"))
    assert result == expected or (isinstance(result, HTTPError) and expected is HTTPError)


@given(st.dictionaries(st.sampled_from(["content-length", "transfer-encoding", "x"]), hostile, max_size=3))
def test_content_length_and_has_body_never_fail_otherwise(headers: dict[str, str]) -> None:
    assert isinstance(has_body(headers), bool)
    result = outcome(lambda: content_length(headers))
    if "content-length" not in headers:
        assert result is None
    elif isinstance(result, int):
        assert 0 <= result <= MAX_INT64
        if result > 0:
            assert has_body(headers)


@given(hostile)
def test_media_type_is_lower_case_without_parameters(value: str) -> None:
    essence = media_type(value)
    assert ";" not in essence and essence == essence.strip() and essence == essence.lower()


# -- Upload-Metadata ----------------------------------------------------------------------------

metadata_keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","), min_size=1, max_size=20
)
#: Values are bytes to the protocol; pytusd keeps them as surrogate-escaped text.
metadata_values = st.binary(max_size=60).map(lambda raw: raw.decode("utf-8", "surrogateescape"))


@given(st.dictionaries(metadata_keys, metadata_values, max_size=12))
def test_metadata_round_trips(metadata: dict[str, str]) -> None:
    assert parse_metadata(format_metadata(metadata)) == metadata


@given(
    st.lists(st.tuples(metadata_keys, st.binary(max_size=20)), max_size=8), st.sampled_from([",", ", ", " ,", ",  "])
)
def test_metadata_tolerates_spaces_around_pairs(pairs: list[tuple[str, bytes]], comma: str) -> None:
    assume(len({key for key, _ in pairs}) == len(pairs))
    header = comma.join(f"{key} {base64.b64encode(raw).decode()}" if raw else key for key, raw in pairs)
    expected = {key: raw.decode("utf-8", "surrogateescape") for key, raw in pairs}
    assert parse_metadata(header) == expected


@given(hostile)
@example("a " + "QUFB" * 20000)
@example(",".join(f"k{i}" for i in range(MAX_METADATA_PAIRS + 1)))
@example("a aGk=,a aGk=")
@example("a aGk")
def test_metadata_parser_accepts_only_well_formed_headers(value: str) -> None:
    result = outcome(lambda: parse_metadata(value))
    if isinstance(result, HTTPError):
        assert result.status == 400
        assert_not_echoed(result, value)
        return
    assert len(value) <= MAX_METADATA_HEADER and len(result) <= MAX_METADATA_PAIRS
    for key, decoded in result.items():
        assert re.fullmatch(r"[!-+\--~]+", key)
        decoded.encode("utf-8", "surrogateescape")  # bytes again, losslessly
    # What is accepted is stored, and what is stored formats to a header that parses to the same.
    assert parse_metadata(format_metadata(result)) == result


@given(st.dictionaries(hostile, hostile, max_size=5))
def test_formatted_metadata_is_always_sendable(metadata: dict[str, str]) -> None:
    """Metadata from a hook or a foreign store may hold anything; the header never carries it raw."""
    header = format_metadata(
        {k: v.encode("utf-8", "surrogatepass").decode("utf-8", "surrogateescape") for k, v in metadata.items()}
    )
    assert_sendable([("upload-metadata", header)])
    assert isinstance(parse_metadata(header), dict)


# -- Upload-Checksum ----------------------------------------------------------------------------


@given(st.sampled_from(sorted(ALGORITHMS)), st.binary(min_size=1, max_size=64), st.sampled_from(["", " ", "  "]))
def test_checksum_round_trips(algorithm: str, digest: bytes, pad: str) -> None:
    parsed = parse_checksum(f"{pad}{algorithm} {base64.b64encode(digest).decode()}{pad}", ALGORITHMS)
    assert (parsed.algorithm, parsed.digest) == (algorithm, digest)


@given(hostile)
@example("sha1 " + "A" * 10)
@example("SHA1 AAAA")
@example("sha1  AAAA")
@example("nope AAAA")
def test_checksum_parser_accepts_only_known_algorithms_and_base64(value: str) -> None:
    result = outcome(lambda: parse_checksum(value, ALGORITHMS))
    if isinstance(result, HTTPError):
        assert result.status == 400
        assert_not_echoed(result, value)
    else:
        assert result.algorithm in ALGORITHMS and result.digest


@given(st.dictionaries(st.sampled_from(["trailer", "upload-checksum"]), hostile))
def test_checksum_header_and_trailer_announcement(headers: dict[str, str]) -> None:
    assert isinstance(tus.announces_checksum_trailer(headers), bool)
    result = outcome(lambda: tus.upload_checksum(headers))
    assert (result is None) == ("upload-checksum" not in headers) or isinstance(result, HTTPError)


# -- Tus-Resumable, Upload-Length / Upload-Defer-Length on creation -------------------------------


@given(st.sampled_from(["POST", "PATCH", "HEAD", "DELETE", "GET", "OPTIONS", "PUT", "FOO"]), st.none() | hostile)
@example("PATCH", "1.0.0")
@example("PATCH", " 1.0.0")
def test_tus_version_rule(method: str, version: str | None) -> None:
    headers = {} if version is None else {"tus-resumable": version}
    result = outcome(lambda: tus.check_version(method, headers))
    if method in ("OPTIONS", "GET") or version == "1.0.0":
        assert result is None
    else:
        assert isinstance(result, HTTPError) and result.status == 412
        assert ("tus-version", "1.0.0") in result.headers


@given(st.none() | hostile | st.integers(0, 2**70).map(str), st.none() | hostile | st.just("1"), st.booleans())
def test_creation_length_is_a_length_or_deferred_never_both(
    length: str | None, deferred: str | None, can_defer: bool
) -> None:
    headers = {k: v for k, v in (("upload-length", length), ("upload-defer-length", deferred)) if v is not None}
    result = outcome(lambda: tus.creation_length(headers, can_defer=can_defer))
    if isinstance(result, HTTPError):
        assert result.status == 400
        return
    if result is None:
        assert length is None and deferred is not None and deferred.strip() == "1" and can_defer
    else:
        assert deferred is None and length is not None and 0 <= result <= MAX_INT64 and result == int(length)


# -- IETF draft: Structured Field headers -------------------------------------------------------


@given(hostile)
@example("8;a=1")
@example("08")
@example("-8")
@example("9")
def test_interop_version_is_supported_or_ignored_or_400(value: str) -> None:
    result = outcome(lambda: ietf.parse_version(value))
    if isinstance(result, HTTPError):
        assert result.status == 400
        return
    assert result is None or result in ietf.SUPPORTED_VERSIONS


@given(st.sampled_from(sorted(ietf.SUPPORTED_VERSIONS)), st.sampled_from(["", " ", ";a=1", ";q"]))
def test_interop_version_round_trips(version: int, suffix: str) -> None:
    assert ietf.parse_version(f"{version}{suffix}") == version


@given(st.booleans(), st.sampled_from(sorted(ietf.SUPPORTED_VERSIONS)))
def test_completeness_round_trips(complete: bool, version: int) -> None:
    """What the server says (Upload-Complete, or Upload-Incomplete for version 3) reads back the same."""
    headers = dict(ietf.complete_headers(complete, version))
    assert ietf.upload_complete(headers, version) is complete
    assert ietf.require_complete(headers, version) is complete


@given(hostile, st.sampled_from(sorted(ietf.SUPPORTED_VERSIONS)))
@example("?1", 8)
@example("?1;x", 8)
@example(" ?0 ", 4)
@example("?1, ?0", 8)
@example("1", 8)
@example("?T", 8)
def test_booleans_are_sf_booleans_or_ignored(value: str, version: int) -> None:
    parsed = ietf.parse_boolean(value)
    assert parsed is None or type(parsed) is bool
    if parsed is not None:
        assert http_sf.parse(value.encode("latin-1"), tltype="item")[0] is parsed
    name = "upload-incomplete" if version == 3 else "upload-complete"
    result = outcome(lambda: ietf.require_complete({name: value}, version))
    if parsed is None:
        assert isinstance(result, HTTPError) and result.status == 400
    else:
        assert result is (parsed if version != 3 else not parsed)


@given(st.integers(0, 10**15 - 1), st.sampled_from(["", " ", ";a=1"]))
def test_integers_round_trip(number: int, suffix: str) -> None:
    assert ietf.parse_integer(f"{number}{suffix}") == number


@given(hostile)
@example("1000000000000000")
@example("-1")
@example("1.5")
def test_integers_are_non_negative_sf_integers_or_ignored(value: str) -> None:
    parsed = ietf.parse_integer(value)
    assert parsed is None or (type(parsed) is int and 0 <= parsed < 10**15)


@given(
    st.none() | hostile | st.integers(0, 10**16).map(str),
    st.none() | hostile | st.integers(0, 10**16).map(str),
    st.booleans(),
    st.integers(0, 10**9),
)
@example(None, "\u00b2", True, 0)
def test_declared_length_agrees_with_both_sources(
    length: str | None, content: str | None, complete: bool, offset: int
) -> None:
    headers = {k: v for k, v in (("upload-length", length), ("content-length", content)) if v is not None}
    result = outcome(lambda: ietf.declared_length(headers, complete, offset=offset))
    from_header = ietf.parse_integer(length)
    digits = content is not None and re.fullmatch(r"[0-9]+", content, re.ASCII) is not None
    from_content = offset + int(content) if complete and content is not None and digits else None
    if isinstance(result, HTTPError):
        assert result.status == 400 and result.problem_type == ietf.INCONSISTENT_LENGTH
        disagree = None not in (from_header, from_content) and from_header != from_content
        too_small = (from_header if from_header is not None else from_content or offset) < offset
        assert disagree or too_small
    else:
        assert result == (from_header if from_header is not None else from_content)
        assert result is None or result >= offset


@given(
    st.sampled_from(sorted(ietf.SUPPORTED_VERSIONS)), st.none() | hostile | st.just("application/partial-upload; x=1")
)
def test_partial_upload_media_type_rule(version: int, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    result = outcome(lambda: ietf.require_partial_upload(headers, version))
    ok = version < 6 or media_type(content_type) == ietf.PARTIAL_UPLOAD
    assert (result is None) == ok
    if not ok:
        assert isinstance(result, HTTPError) and result.status == 415


@given(st.dictionaries(st.sampled_from(["upload-metadata", "content-type", "content-disposition"]), hostile))
@example({"content-disposition": 'attachment; filename="a\\"b.txt"'})
def test_draft_metadata_never_fails_otherwise(headers: dict[str, str]) -> None:
    result = outcome(lambda: ietf.metadata(headers))
    if isinstance(result, dict):
        assert parse_metadata(format_metadata(result)) == result


@given(st.sampled_from(sorted(ietf.DIGEST_ALGORITHMS)), st.binary(max_size=64))
def test_digest_round_trips(algorithm: str, value: bytes) -> None:
    assert ietf.parse_digest(ietf.format_digest(algorithm, value)) == ietf.Digest(algorithm, value)


@given(hostile)
@example("sha-256=:AAAA:, sha-512=:AAAA:")
@example("sha-256=AAAA")
@example("md5=:AAAA:")
def test_digests_parse_or_are_ignored(value: str) -> None:
    parsed = ietf.parse_digest(value)
    assert parsed is None or (parsed.algorithm in ietf.DIGEST_ALGORITHMS and isinstance(parsed.value, bytes))


@given(st.sampled_from(sorted(ietf.SUPPORTED_VERSIONS)), st.integers(0, MAX_INT64), st.none() | st.integers(-5, 2**70))
def test_upload_limit_is_a_parseable_dictionary(version: int, max_size: int, max_age: int | None) -> None:
    limit = ietf.upload_limit(version, max_size=max_size, max_age=max_age)
    if limit is None:
        assert version < 6 or (not max_size and max_age is None and version < 8)
        return
    parsed = http_sf.parse(limit.encode(), tltype="dictionary")
    assert all(type(member[0]) is int and member[0] >= 0 for member in parsed.values())


# -- Range --------------------------------------------------------------------------------------


def model_range(value: str | None, size: int) -> tuple[int, int] | type[RangeNotSatisfiable] | None:
    """RFC 9110 14.1.2 for one range: what parse_range must answer."""
    match = re.fullmatch(r"bytes=([0-9]*)-([0-9]*)", (value or "").strip(" \t\n\r\x0b\x0c"), re.ASCII)
    if not value or not match or not (match[1] or match[2]) or len(match[1]) > 19 or len(match[2]) > 19:
        return None
    if not match[1]:
        suffix = int(match[2])
        if suffix == 0:
            return RangeNotSatisfiable
        return (max(size - suffix, 0), size) if size else None  # nothing to send: 200, the whole
    first = int(match[1])
    if match[2] and int(match[2]) < first:
        return None
    if first >= size:
        return RangeNotSatisfiable
    return first, min(int(match[2]) + 1, size) if match[2] else size


ranges = st.one_of(
    st.builds(
        lambda a, b, pad: f"{pad}bytes={a}-{b}{pad}",
        st.sampled_from(["", "0", "1", "00"]) | st.integers(0, 2**64).map(str),
        st.sampled_from(["", "0", "1"]) | st.integers(0, 2**64).map(str),
        st.sampled_from(["", " "]),
    ),
    latin1,  # what a header can hold (pytusd decodes them as latin-1, which has no other decimal digits)
    nasty,
    st.just("bytes=0-1,3-4"),
)


@given(ranges, st.integers(0, 10**6) | st.sampled_from([0, 1, 2]))
def test_range_against_the_rfc(value: str, size: int) -> None:
    expected = model_range(value, size)
    try:
        got: object = parse_range(value, size)
    except RangeNotSatisfiable:
        got = RangeNotSatisfiable
    assert got == expected, (value, size)
    if isinstance(got, tuple):
        start, end = got
        assert 0 <= start < end <= size  # clipped, never empty, never past the end


@given(st.integers(1, 10**6), st.data())
def test_range_round_trips_within_the_upload(size: int, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, size - 1))
    end = data.draw(st.integers(start + 1, size))
    assert parse_range(f"bytes={start}-{end - 1}", size) == (start, end)
    assert parse_range(f"bytes={start}-", size) == (start, size)
    assert parse_range(f"bytes=-{end - start}", size) == (size - (end - start), size)


# -- download headers, Host/Forwarded, CORS: what is built from client input ----------------------


@given(st.dictionaries(st.sampled_from(["filetype", "type", "filename", "name", "x"]), hostile | metadata_values))
@example({"filetype": "text/plain\r\nX-Evil: 1", "filename": "a\r\nb"})
@example({"filename": "\udcff\x85.txt"})
def test_download_headers_are_sendable(metadata: dict[str, str]) -> None:
    headers = content_headers(metadata)
    assert_sendable(headers)
    disposition = dict(headers)["content-disposition"]
    assert disposition.split(";")[0] in ("inline", "attachment")


@given(
    st.dictionaries(st.sampled_from(["host", "forwarded", "x-forwarded-host", "x-forwarded-proto"]), hostile),
    st.booleans(),
)
@example({"host": "a.b:1", "forwarded": 'for=x;host="evil\r\nX: y";proto=https'}, True)
@example({"host": "[::1]:8080", "x-forwarded-proto": "https, http"}, True)
def test_origin_is_a_scheme_and_a_host_or_400(headers: dict[str, str], behind_proxy: bool) -> None:
    result = outcome(lambda: origin_of(headers, "http", None, behind_proxy=behind_proxy))
    if isinstance(result, HTTPError):
        assert result.status == 400
        return
    assert re.fullmatch(r"https?://[A-Za-z0-9\-.\[\]:]+", result), result


@given(st.none() | hostile)
@example("https://a.example")
@example("https://a.example\r\nX: y")
@example("null")
def test_cors_echoes_only_plain_origins(origin: str | None) -> None:
    policy = CorsPolicy(".*")
    if policy.allowed(origin):
        assert origin is not None and len(origin) <= 300
        assert_sendable(policy.headers(origin, preflight=False))
        assert re.fullmatch(r"[A-Za-z0-9+.\-:/\[\]]+", origin), origin


# -- upload IDs, URLs and Upload-Concat ----------------------------------------------------------

id_segments = st.text(alphabet=string.ascii_letters + string.digits + "-._~%!$'()*+,;=:@", min_size=1, max_size=30)
upload_ids = st.lists(id_segments, min_size=1, max_size=4).map("/".join).filter(is_valid_upload_id)


@given(st.text(max_size=300) | hostile)
@example("..")
@example("a/../b")
@example("a//b")
@example("x.info")
@example(".pytusd-tmp/x")
@example("a" * (MAX_ID_LENGTH + 1))
def test_valid_ids_cannot_climb_or_name_store_files(upload_id: str) -> None:
    if not is_valid_upload_id(upload_id):
        return
    assert 0 < len(upload_id) <= MAX_ID_LENGTH and upload_id.isascii() and upload_id.isprintable()
    segments = upload_id.split("/")
    assert all(s not in ("", ".", "..") for s in segments)
    assert not any(s.endswith((".info", ".lock")) for s in segments)


@given(upload_ids)
def test_upload_urls_round_trip(upload_id: str) -> None:
    from urllib.parse import unquote

    path = upload_path(BASE, upload_id)
    assert path.isascii() and SENDABLE.fullmatch(path)
    assert id_from_path(BASE, unquote(path)) == upload_id


@given(st.lists(upload_ids, min_size=1, max_size=5), st.sampled_from(["", "http://h.example", "https://[::1]:9"]))
def test_concat_round_trips(ids: list[str], origin: str) -> None:
    """Relative URLs, or absolute ones of the server's own origin, name the uploads they were made
    from; the same paths on another origin are refused (they may name other uploads there)."""
    final = Concat(is_partial=False, partial_ids=tuple(ids))
    header = format_concat(final, BASE)
    assert header is not None
    server = origin or "http://server.example"
    if origin:
        header = "final;" + " ".join(origin + url for url in header.removeprefix("final;").split(" "))
        elsewhere = outcome(lambda: parse_concat(header, BASE, "http://elsewhere.example"))
        assert isinstance(elsewhere, HTTPError) and elsewhere.status == 400
    parsed = parse_concat(header, BASE, server)
    assert (parsed.is_partial, parsed.partial_ids, parsed.received) == (False, final.partial_ids, header)
    assert parse_concat("partial", BASE, server) == Concat(is_partial=True)


@given(hostile | st.builds(lambda s: "final;" + s, hostile | st.text(alphabet="/files%2E.:ab ", max_size=40)))
@example("final;/files/a /files/../b")
@example("final;/files/a%2F..%2Fb")
@example("final;/files/")
@example("final;http://x/files/a?q=1")
@example("final;javascript:/files/a")
def test_concat_parser_names_only_valid_uploads(value: str) -> None:
    result = outcome(lambda: parse_concat(value, BASE, "http://x"))
    if isinstance(result, HTTPError):
        assert result.status == 400
        assert_not_echoed(result, value)
        return
    assert result.is_partial or result.partial_ids
    assert all(is_valid_upload_id(pid) for pid in result.partial_ids)


@given(st.text(max_size=100) | hostile)
def test_request_paths_name_the_endpoint_an_upload_or_nothing(path: str) -> None:
    upload_id = id_from_path(BASE, path)
    assert upload_id is None or upload_id == "" or is_valid_upload_id(upload_id)


# -- headers the server sends about an upload ------------------------------------------------------


@st.composite
def upload_infos(draw: st.DrawFn) -> UploadInfo:
    size = draw(st.none() | st.integers(0, MAX_INT64))
    offset = draw(st.integers(0, size if size is not None else MAX_INT64))
    kind = draw(st.sampled_from(["plain", "partial", "final"]))
    partials = draw(st.lists(upload_ids, min_size=1, max_size=3)) if kind == "final" else []
    # A final's Upload-Concat as received (kept to be returned on HEAD): as a client sent it, or
    # whatever an info file from elsewhere holds (HEAD must then rebuild it, never send it raw).
    as_sent = "final;" + " ".join("http://x" + upload_path(BASE, pid) for pid in partials)
    received = draw(st.none() | st.just(as_sent) | hostile) if kind == "final" else None
    return UploadInfo(
        id=draw(upload_ids),
        size=size,
        offset=offset,
        metadata=draw(st.dictionaries(metadata_keys, metadata_values, max_size=3)),
        is_partial=kind == "partial",
        is_final=kind == "final",
        partial_uploads=partials,
        upload_concat=received,
    )


@given(upload_infos())
def test_head_headers_describe_the_upload(info: UploadInfo) -> None:
    headers = tus.head_headers(info, BASE)
    assert_sendable(headers)
    values = dict(headers)
    if "upload-offset" in values:
        assert parse_non_negative_int(values["upload-offset"], "Upload-Offset") == info.offset
    if info.size is not None:
        assert parse_non_negative_int(values["upload-length"], "Upload-Length") == info.size
    elif not info.is_final:
        assert values["upload-defer-length"] == "1"
    assert parse_metadata(values.get("upload-metadata")) == info.metadata
    concat = values.get("upload-concat")
    if info.is_partial or info.is_final:
        assert concat is not None
        parsed = parse_concat(concat, BASE, "http://x")
        assert parsed.is_partial == info.is_partial
        assert list(parsed.partial_ids) == info.partial_uploads


@given(st.floats(0, 2**33, allow_nan=False))
def test_http_date_round_trips_to_the_second(timestamp: float) -> None:
    text = http_date(timestamp)
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", text)
    assert email.utils.parsedate_to_datetime(text).timestamp() == int(timestamp)


@pytest.mark.parametrize("max_size", [0, 10])
def test_options_headers_are_sendable(max_size: int) -> None:
    headers = tus.options_headers(
        tus.extensions(frozenset({"termination"}), Config()), max_size=max_size, trailers=True
    )
    assert_sendable(headers)
