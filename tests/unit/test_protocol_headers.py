"""Pure header rules: no server, no store."""

from __future__ import annotations

import base64
import hashlib

import pytest

from pytusd.protocol.checksum import ALGORITHMS
from pytusd.protocol.errors import HTTPError
from pytusd.protocol.headers import (
    MAX_INT64,
    format_metadata,
    http_date,
    parse_checksum,
    parse_metadata,
    parse_non_negative_int,
)


@pytest.mark.parametrize("value,expected", [("0", 0), ("5", 5), ("007", 7), (str(MAX_INT64), MAX_INT64)])
def test_non_negative_int_accepts_plain_digits(value: str, expected: int) -> None:
    assert parse_non_negative_int(value, "Upload-Offset") == expected


@pytest.mark.parametrize(
    "value",
    ["", "-1", "+1", " 1", "1 ", "1.0", "1e3", "0x10", "\u0661", str(MAX_INT64 + 1), "9" * 40, "1,1", "\x001"],
)
def test_non_negative_int_rejects_everything_else(value: str) -> None:
    with pytest.raises(HTTPError) as exc:
        parse_non_negative_int(value, "Upload-Offset")
    assert exc.value.status == 400
    assert value.strip() not in exc.value.reason or not value.strip()


def test_missing_number_is_400() -> None:
    with pytest.raises(HTTPError, match="missing Upload-Length"):
        parse_non_negative_int(None, "Upload-Length")


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def test_metadata_round_trip_with_key_only_and_binary_values() -> None:
    binary = bytes(range(256))
    header = f"filename {b64('wörld.txt')},empty,bin {b64(binary)}"
    parsed = parse_metadata(header)
    assert parsed["filename"] == "wörld.txt"
    assert parsed["empty"] == ""
    assert parsed["bin"].encode("utf-8", "surrogateescape") == binary
    assert parse_metadata(format_metadata(parsed)) == parsed


@pytest.mark.parametrize("header", [None, "", "   "])
def test_empty_metadata_is_accepted(header: str | None) -> None:
    assert parse_metadata(header) == {}


@pytest.mark.parametrize(
    "header",
    [
        "a !!!",  # not base64
        "a aGVsbG8",  # bad padding
        "a aGVsbG8=,a aGVsbG8=",  # duplicate key
        "a b c",  # three parts
        ",a aGVsbG8=",  # empty key
        "ké aGVsbG8=",  # non-ASCII key
        "a\x01 aGVsbG8=",  # control character
        "a " + "QUFB" * 20000,  # too large
    ],
)
def test_bad_metadata_is_400(header: str) -> None:
    with pytest.raises(HTTPError) as exc:
        parse_metadata(header)
    assert exc.value.status == 400


def test_formatted_metadata_never_contains_raw_values() -> None:
    value = "evil\r\nSet-Cookie: x=1"
    header = format_metadata({"name": value})
    assert "\r" not in header and "\n" not in header and "Set-Cookie" not in header


def test_checksum_parsing() -> None:
    digest = hashlib.sha1(b"hello world").digest()
    parsed = parse_checksum(f"sha1 {b64(digest)}", ALGORITHMS)
    assert parsed.algorithm == "sha1" and parsed.digest == digest


@pytest.mark.parametrize("value", ["sha1", "sha1 !!", "sha1 ", "SHA1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", "a b c"])
def test_bad_checksum_header_is_400(value: str) -> None:
    with pytest.raises(HTTPError) as exc:
        parse_checksum(value, ALGORITHMS)
    assert exc.value.status == 400


def test_unknown_algorithm_is_400() -> None:
    with pytest.raises(HTTPError, match="unsupported checksum algorithm"):
        parse_checksum("whirlpool AAAA", ALGORITHMS)


def test_crc32_digest_is_big_endian() -> None:
    crc = ALGORITHMS["crc32"]()
    crc.update(b"hello ")
    crc.update(b"world")
    assert crc.digest() == bytes.fromhex("0d4a1185")


def test_http_date_is_imf_fixdate() -> None:
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
