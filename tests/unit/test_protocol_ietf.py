"""Pure rules of the IETF resumable upload draft (``pytusd.protocol.ietf``).

Every draft header is a Structured Field (RFC 9651): a value that does not parse, or parses to
the wrong type, is ignored as a whole (the draft: "Other values MUST cause the entire header field
to be ignored").
"""

from __future__ import annotations

import base64
import hashlib
import json

import http_sf
import pytest

from pytusd.protocol import ietf
from pytusd.protocol.errors import HTTPError

# -- Upload-Draft-Interop-Version --------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 4, 5, 6, 7, 8])
def test_version_supported(version: int) -> None:
    assert ietf.parse_version(str(version)) == version


@pytest.mark.parametrize("value", ["08", " 8", "8 ", "8;a=1", "8;a"])
def test_version_valid_integer_forms(value: str) -> None:
    """Leading zeros, surrounding spaces and parameters are all valid SF Integers."""
    assert ietf.parse_version(value) == 8


def test_version_absent_means_tus() -> None:
    assert ietf.parse_version(None) is None


@pytest.mark.parametrize(
    "value",
    ["", " ", "abc", "8.0", "8.", '"8"', "?1", "8, 8", "8 8", ":OA==:", "(8)", "8a", "+8", "0x8", "\u0668", "\uff18",
     "1000000000000000", "8;", "8;A=1", "*8", "8\t"],
)  # fmt: skip
def test_version_unparseable_is_ignored(value: str) -> None:
    assert ietf.parse_version(value) is None


@pytest.mark.parametrize("value", ["0", "1", "2", "9", "10", "99", "-1", "-8", "999999999999999"])
def test_version_unknown_is_an_error(value: str) -> None:
    with pytest.raises(HTTPError) as raised:
        ietf.parse_version(value)
    assert 400 <= raised.value.status < 500
    assert "Upload-Draft-Interop-Version" in raised.value.reason


def test_supported_versions() -> None:
    assert frozenset({3, 4, 5, 6, 7, 8}) == ietf.SUPPORTED_VERSIONS
    assert ietf.LATEST_VERSION == 8


# -- booleans and integers ------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("?1", True), ("?0", False), (" ?1 ", True), ("?1;x=2", True)])
def test_boolean(value: str, expected: bool) -> None:
    assert ietf.parse_boolean(value) is expected


@pytest.mark.parametrize("value", [None, "", "1", "0", "true", "?", "?2", "? 1", "?1, ?0", "?T", '"?1"', "?01"])
def test_boolean_invalid_is_ignored(value: str | None) -> None:
    assert ietf.parse_boolean(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("42", 42), ("007", 7), ("-0", 0), ("999999999999999", 999_999_999_999_999), ("5;p=1", 5)],
)
def test_integer(value: str, expected: int) -> None:
    assert ietf.parse_integer(value) == expected


@pytest.mark.parametrize(
    "value", [None, "", "-1", "1.5", "1.0", "abc", "1000000000000000", "1,2", "?1", '"1"', "1 2", "+1", "1e3"]
)
def test_integer_invalid_is_ignored(value: str | None) -> None:
    assert ietf.parse_integer(value) is None


def test_non_latin1_value_is_ignored() -> None:
    assert ietf.parse_integer("\u20ac") is None
    assert ietf.parse_boolean("\u20ac") is None
    assert ietf.parse_version("\u20ac") is None


# -- completeness -------------------------------------------------------------------------------


def test_upload_incomplete_in_v3() -> None:
    assert ietf.upload_complete({"upload-incomplete": "?0"}, 3) is True
    assert ietf.upload_complete({"upload-incomplete": "?1"}, 3) is False
    assert ietf.upload_complete({"upload-complete": "?1"}, 3) is None  # not a v3 header
    assert ietf.upload_complete({"upload-incomplete": "1"}, 3) is None


@pytest.mark.parametrize("version", [4, 5, 6, 7, 8])
def test_upload_complete_from_v4(version: int) -> None:
    assert ietf.upload_complete({"upload-complete": "?1"}, version) is True
    assert ietf.upload_complete({"upload-complete": "?0"}, version) is False
    assert ietf.upload_complete({"upload-incomplete": "?0"}, version) is None  # gone since v4
    assert ietf.upload_complete({"upload-complete": "yes"}, version) is None
    assert ietf.upload_complete({}, version) is None


def test_complete_headers() -> None:
    assert ietf.complete_headers(True, 3) == [("upload-incomplete", "?0")]
    assert ietf.complete_headers(False, 3) == [("upload-incomplete", "?1")]
    for version in (4, 5, 6, 7, 8):
        assert ietf.complete_headers(True, version) == [("upload-complete", "?1")]
        assert ietf.complete_headers(False, version) == [("upload-complete", "?0")]


# -- Upload-Limit --------------------------------------------------------------------------------


def parse_limit(value: str) -> dict[str, object]:
    parsed = http_sf.parse(value.encode(), tltype="dictionary")
    return {name: member[0] for name, member in parsed.items()}


@pytest.mark.parametrize("version", [3, 4, 5])
def test_no_upload_limit_before_v6(version: int) -> None:
    assert ietf.upload_limit(version, max_size=100, max_age=60) is None


def test_upload_limit_v6_says_expires() -> None:
    value = ietf.upload_limit(6, max_size=100, max_age=60)
    assert value is not None
    assert parse_limit(value) == {"max-size": 100, "expires": 60}


@pytest.mark.parametrize("version", [7, 8])
def test_upload_limit_from_v7_says_max_age(version: int) -> None:
    value = ietf.upload_limit(version, max_size=1_000_000, max_age=3600)
    assert value is not None
    assert parse_limit(value) == {"max-size": 1_000_000, "max-age": 3600}


@pytest.mark.parametrize("version", [6, 7, 8])
def test_upload_limit_single_members(version: int) -> None:
    only_size = ietf.upload_limit(version, max_size=5, max_age=None)
    assert only_size is not None and parse_limit(only_size) == {"max-size": 5}
    only_age = ietf.upload_limit(version, max_size=0, max_age=10)
    age_key = "expires" if version == 6 else "max-age"
    assert only_age is not None and parse_limit(only_age) == {age_key: 10}


@pytest.mark.parametrize("version", [6, 7, 8])
def test_upload_limit_without_limits(version: int) -> None:
    """Nothing to announce: no header, or (editors' copy) ``min-size=0`` rather than an empty one."""
    value = ietf.upload_limit(version, max_size=0, max_age=None)
    assert value is None or parse_limit(value) == {"min-size": 0}


def test_upload_limit_never_negative() -> None:
    value = ietf.upload_limit(8, max_size=0, max_age=-5)
    assert value is not None
    assert parse_limit(value) == {"max-age": 0}


def test_upload_limit_is_a_valid_dictionary() -> None:
    value = ietf.upload_limit(8, max_size=2**40, max_age=86400)
    assert value is not None
    assert http_sf.ser(http_sf.parse(value.encode(), tltype="dictionary")) == value


# -- problem documents ----------------------------------------------------------------------------


def test_problem_types() -> None:
    base = "https://iana.org/assignments/http-problem-types#"
    assert base + "mismatching-upload-offset" == ietf.MISMATCHING_OFFSET
    assert base + "completed-upload" == ietf.COMPLETED_UPLOAD
    assert base + "inconsistent-upload-length" == ietf.INCONSISTENT_LENGTH


@pytest.mark.parametrize(("version", "expected"), [(3, False), (4, False), (5, False), (6, True), (7, True), (8, True)])
def test_uses_problem_types(version: int, expected: bool) -> None:
    assert ietf.uses_problem_types(version) is expected


def test_problem_body_mismatching_offset() -> None:
    error = HTTPError(409, "offset mismatch", problem_type=ietf.MISMATCHING_OFFSET,
                      extra={"expected-offset": 12500000, "provided-offset": 25000000})  # fmt: skip
    document = json.loads(ietf.problem_body(error))
    assert document == {
        "type": ietf.MISMATCHING_OFFSET,
        "title": "offset mismatch",
        "expected-offset": 12500000,
        "provided-offset": 25000000,
    }
    assert isinstance(document["expected-offset"], int)


def test_problem_body_is_json_even_with_quotes() -> None:
    error = HTTPError(400, 'the "length" disagrees \\ here', problem_type=ietf.INCONSISTENT_LENGTH)
    document = json.loads(ietf.problem_body(error).decode("utf-8"))
    assert document == {"type": ietf.INCONSISTENT_LENGTH, "title": 'the "length" disagrees \\ here'}


# -- digests (RFC 9530) ---------------------------------------------------------------------------


def sf(algorithm: str, raw: bytes) -> str:
    return f"{algorithm}=:{base64.b64encode(raw).decode()}:"


def test_digest_sha256() -> None:
    raw = hashlib.sha256(b"hello").digest()
    assert ietf.parse_digest(sf("sha-256", raw)) == ietf.Digest("sha-256", raw)


def test_digest_sha512() -> None:
    raw = hashlib.sha512(b"hello").digest()
    assert ietf.parse_digest(sf("sha-512", raw)) == ietf.Digest("sha-512", raw)


def test_digest_prefers_the_strongest() -> None:
    a, b = hashlib.sha256(b"a").digest(), hashlib.sha512(b"b").digest()
    assert ietf.parse_digest(f"{sf('sha-256', a)}, {sf('sha-512', b)}") == ietf.Digest("sha-512", b)
    assert ietf.parse_digest(f"{sf('sha-512', b)}, {sf('sha-256', a)}") == ietf.Digest("sha-512", b)


def test_digest_skips_unsupported_algorithms() -> None:
    raw = hashlib.sha256(b"x").digest()
    value = f"{sf('md5', hashlib.md5(b'x').digest())}, {sf('sha-256', raw)}, {sf('unixsum', b'12')}"
    assert ietf.parse_digest(value) == ietf.Digest("sha-256", raw)
    assert ietf.parse_digest(sf("md5", hashlib.md5(b"x").digest())) is None
    assert ietf.parse_digest(sf("sha", hashlib.sha1(b"x").digest())) is None


@pytest.mark.parametrize(
    "value",
    [None, "", "sha-256", "sha-256=abc", 'sha-256="AAAA"', "sha-256=:not base64!:", "sha-256=:AAAA", "SHA-256=:AAAA:",
     "sha-256=:AAAA:,", "sha-256=?1", "sha-256=1", "sha-256=(:AAAA:)", "\u20ac=:AAAA:"],
)  # fmt: skip
def test_digest_invalid_is_ignored(value: str | None) -> None:
    assert ietf.parse_digest(value) is None


def test_digest_with_parameters() -> None:
    raw = hashlib.sha256(b"p").digest()
    assert ietf.parse_digest(sf("sha-256", raw) + ";x=1") == ietf.Digest("sha-256", raw)


def test_digest_algorithms_compute_what_they_name() -> None:
    assert ietf.DIGEST_ALGORITHMS["sha-256"]().name == "sha256"
    assert ietf.DIGEST_ALGORITHMS["sha-512"]().name == "sha512"


@pytest.mark.parametrize("algorithm", ["sha-256", "sha-512"])
def test_format_digest_round_trip(algorithm: str) -> None:
    raw = ietf.DIGEST_ALGORITHMS[algorithm](b"round trip").digest()
    formatted = ietf.format_digest(algorithm, raw)
    assert formatted == sf(algorithm, raw)
    assert ietf.parse_digest(formatted) == ietf.Digest(algorithm, raw)


def test_partial_upload_media_type() -> None:
    assert ietf.PARTIAL_UPLOAD == "application/partial-upload"


# -- offset retrieval with GET (editors' copy) -------------------------------------------------


@pytest.mark.parametrize(("version", "expected"), [(3, False), (6, False), (7, False), (8, True)])
def test_get_retrieves_the_offset_from_version_8(version: int, expected: bool) -> None:
    """The editors' copy (still interop 8): "A successful response to a HEAD or GET request against
    an upload resource MUST include the offset"; -11 and before knew only HEAD."""
    assert ietf.retrieves_offset_with_get(version) is expected


# -- requests with no version at all (the coming RFC) ------------------------------------------

PARTIAL = {"content-type": "application/partial-upload", "upload-offset": "3"}
OCTET = {"content-type": "application/offset+octet-stream", "upload-offset": "3"}


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("POST", {"upload-complete": "?1"}),
        ("POST", {"upload-complete": "?0", "content-type": "image/png"}),
        ("PUT", {"upload-complete": "?0"}),
        ("PATCH", {"upload-complete": "?0", **PARTIAL}),
        ("PATCH", PARTIAL),  # then the draft's own rules refuse the missing Upload-Complete (400)
        ("PATCH", {"content-type": "Application/Partial-Upload; x=1", "upload-offset": "3"}),
        ("PATCH", {"upload-complete": "?1"}),  # no type: the draft's rules answer 415
        ("HEAD", {}),
        ("DELETE", {}),
    ],
)
def test_unversioned_draft_requests(method: str, headers: dict[str, str]) -> None:
    assert ietf.unversioned_is_draft(method, headers)


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("POST", {"upload-length": "5"}),  # tus without its version: 412
        ("POST", {"upload-complete": "yes"}),  # not an SF Boolean: ignored as a whole
        ("POST", {"upload-complete": "?1", "tus-resumable": "1.0.0"}),
        ("POST", {"upload-complete": "?1", "upload-draft-interop-version": "8.0"}),  # unparseable: stays tus
        ("PATCH", OCTET),
        ("PATCH", {"upload-complete": "?1", **OCTET}),  # tus' body type decides
        ("PATCH", {"upload-offset": "3"}),
        ("HEAD", {"tus-resumable": "0.2.2"}),
        ("DELETE", {"tus-resumable": "0.2.2"}),
        ("GET", {}),  # tus' download, which needs no version
        ("OPTIONS", {}),
    ],
)
def test_requests_that_stay_tus(method: str, headers: dict[str, str]) -> None:
    assert not ietf.unversioned_is_draft(method, headers)


@pytest.mark.parametrize("version", [6, 7, 8])
def test_upload_limit_past_the_sf_integer_range(version: int) -> None:
    """Found by the property tests: --max-size 1P (or more) made every draft request a 500."""
    value = ietf.upload_limit(version, max_size=2**60, max_age=10**16)
    assert value is not None
    members = http_sf.parse(value.encode(), tltype="dictionary").values()
    assert all(member[0] == ietf.SF_INTEGER_MAX for member in members)


@pytest.mark.parametrize("value", ["\u00b2", "\u0665", "1\uff15"])
def test_declared_length_ignores_non_ascii_digits(value: str) -> None:
    """Found by the property tests: str.isdigit() takes '²', int() does not (a ValueError, not a 400).
    The strict Content-Length parser answers such a request later with a 400."""
    assert ietf.declared_length({"content-length": value}, True, offset=0) is None
