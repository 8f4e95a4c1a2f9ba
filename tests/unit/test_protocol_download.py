"""Download headers and Range parsing."""

from __future__ import annotations

import pytest

from pytusd.protocol.cors import CorsPolicy
from pytusd.protocol.download import RangeNotSatisfiable, content_headers, parse_range
from pytusd.protocol.errors import HTTPError
from pytusd.protocol.forwarded import origin_of


def headers_of(metadata: dict[str, str]) -> dict[str, str]:
    return dict(content_headers(metadata))


def test_allow_listed_type_is_inline() -> None:
    h = headers_of({"filetype": "image/png", "filename": "a.png"})
    assert h["content-type"] == "image/png"
    assert h["content-disposition"] == 'inline; filename="a.png"'
    assert h["x-content-type-options"] == "nosniff"


def test_other_types_are_attachments() -> None:
    h = headers_of({"filetype": "text/html", "filename": "x.html"})
    assert h["content-type"] == "text/html"
    assert h["content-disposition"].startswith("attachment")


@pytest.mark.parametrize("filetype", ["", "nonsense", "text/html\r\nX: y", "a/b; c", "null"])
def test_unparseable_type_falls_back_to_octet_stream(filetype: str) -> None:
    h = headers_of({"filetype": filetype})
    assert h["content-type"] == "application/octet-stream"
    assert h["content-disposition"] == "attachment"


def test_non_ascii_filename_gets_rfc6266_star_param() -> None:
    h = headers_of({"filename": 'résumé "final".pdf'})
    assert h["content-disposition"] == (
        "attachment; filename=\"r_sum_ _final_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
    )


def test_filename_cannot_inject_or_carry_paths() -> None:
    h = headers_of({"filename": "../../etc/passwd\r\nSet-Cookie: a=b"})
    assert "\r" not in h["content-disposition"] and "\n" not in h["content-disposition"]
    assert "../" not in h["content-disposition"]


@pytest.mark.parametrize(
    "value,expected",
    [
        (None, None), ("bytes=0-4", (0, 5)), ("bytes=5-", (5, 10)), ("bytes=-3", (7, 10)),
        ("bytes=8-100", (8, 10)), ("bytes=-100", (0, 10)), ("bytes=0-1,3-4", None), ("items=0-1", None),
        ("bytes=5-2", None), ("bytes=-", None),
    ],
)  # fmt: skip
def test_range(value: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(value, 10) == expected


@pytest.mark.parametrize("value", ["bytes=10-", "bytes=20-30", "bytes=-0"])
def test_unsatisfiable_range(value: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(value, 10)


def test_suffix_range_of_an_empty_upload_sends_it_whole() -> None:
    """Found by the property tests: (0, 0) made a 206 with ``Content-Range: bytes 0--1/0``."""
    assert parse_range("bytes=-1", 0) is None
    assert parse_range("bytes=-500", 0) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)


def test_cors_echoes_only_well_formed_allowed_origins() -> None:
    policy = CorsPolicy(r"https://app\.example\.com")
    assert policy.allowed("https://app.example.com")
    assert not policy.allowed("https://evil.example.com")
    assert not CorsPolicy(".*").allowed("https://x.com\r\nSet-Cookie: a")
    assert not CorsPolicy(None).allowed("https://app.example.com")


def test_forwarded_headers_only_behind_proxy() -> None:
    headers = {"host": "internal:8080", "x-forwarded-host": "up.example.com", "x-forwarded-proto": "https"}
    assert origin_of(headers, "http", None, behind_proxy=False) == "http://internal:8080"
    assert origin_of(headers, "http", None, behind_proxy=True) == "https://up.example.com"
    forwarded = {"host": "internal", "forwarded": 'for=1.2.3.4;host="a.example";proto=https, host=b'}
    assert origin_of(forwarded, "http", None, behind_proxy=True) == "https://a.example"
    assert origin_of({"host": "h", "x-forwarded-proto": "gopher"}, "http", None, behind_proxy=True) == "http://h"


@pytest.mark.parametrize("host", ["evil.com/path", "a b", "x\r\ny", "", "a@b"])
def test_bad_host_is_400(host: str) -> None:
    with pytest.raises(HTTPError) as exc:
        origin_of({"host": host}, "http", None, behind_proxy=False)
    assert exc.value.status == 400
