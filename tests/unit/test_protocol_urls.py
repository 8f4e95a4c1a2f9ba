"""Upload IDs, paths and Upload-Concat."""

from __future__ import annotations

import pytest

from pytusd.protocol.errors import HTTPError
from pytusd.protocol.urls import format_concat, id_from_path, is_valid_upload_id, parse_concat, upload_path


@pytest.mark.parametrize("upload_id", ["abc", "a-b_c.d~e", "user/42/file", "x:y@z", "a%20b", "(1)*+,;=!$'"])
def test_valid_ids(upload_id: str) -> None:
    assert is_valid_upload_id(upload_id)


@pytest.mark.parametrize(
    "upload_id",
    ["", "/abc", "abc/", "a//b", ".", "..", "../x", "a/../b", "a/./b", "a b", "a\\b", "a\x00b", "ä", "a?b",
     "a#b", "x" * 256, "x" * 201, "a/" + "x" * 201],
)  # fmt: skip
def test_invalid_ids(upload_id: str) -> None:
    assert not is_valid_upload_id(upload_id)


def test_segments_leave_room_for_a_suffix_in_one_file_name() -> None:
    """A data file's name plus ``.finals`` fits the 255 bytes file systems allow per name."""
    assert is_valid_upload_id("x" * 200)
    assert is_valid_upload_id("/".join(["x" * 200, "y" * 54]))
    assert len("x" * 200 + ".finals") <= 255


def test_paths_round_trip() -> None:
    for upload_id in ["abc", "user/42/file", "a%20b"]:
        assert id_from_path("/files/", upload_path("/files/", upload_id).replace("%25", "%")) == upload_id


def test_base_path_is_the_creation_endpoint() -> None:
    assert id_from_path("/files/", "/files/") == ""
    assert id_from_path("/files/", "/files") == ""
    assert id_from_path("/files/", "/other/x") is None
    assert id_from_path("/files/", "/files/../etc/passwd") is None


ORIGIN = "http://host:1"


def test_concat_partial_and_final() -> None:
    assert parse_concat("partial", "/files/", ORIGIN).is_partial
    final = parse_concat("final;/files/a HTTP://Host:1/files/b //host:1/files/c%2Fd", "/files/", ORIGIN)
    assert final.is_final and final.partial_ids == ("a", "b", "c/d")
    assert format_concat(final, "/files/") == "final;/files/a /files/b /files/c/d"


def test_concat_keeps_the_urls_as_received() -> None:
    """tus: HEAD returns Upload-Concat "as received in the upload creation request"."""
    value = "final;http://host:1/files/a  \t/files/b"
    assert parse_concat(value, "/files/", ORIGIN).received == "final;http://host:1/files/a /files/b"
    assert parse_concat(" partial ", "/files/", ORIGIN).received == "partial"


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("http://host/files/a", "http://host:80"),
        ("https://example.org/files/a", "https://example.org:443"),
        ("https://example.org:443/files/a", "https://example.org"),
        ("http://[::1]:8080/files/a", "http://[::1]:8080"),
        ("//example.org/files/a", "https://example.org"),
    ],
)
def test_concat_default_ports_are_the_same_origin(url: str, origin: str) -> None:
    assert parse_concat("final;" + url, "/files/", origin).partial_ids == ("a",)


@pytest.mark.parametrize(
    "url",
    ["http://other:1/files/a", "http://host:2/files/a", "https://host:1/files/a", "http://host/files/a",
     "//other:1/files/a", "http://user@host:1/files/a", "http://user:pw@host:1/files/a", "http://host:99999/files/a", "http://host:0/files/a",
     "http:/files/a", "http:files/a", "http://host:1/other/a", "files/a", "../files/a", "/files/a\x7f"],
)  # fmt: skip
def test_concat_url_of_another_origin_or_outside_the_base_path_is_400(url: str) -> None:
    """A URL is never resolved by its last segment: another server's /files/a is not ours."""
    with pytest.raises(HTTPError) as exc:
        parse_concat("final;" + url, "/files/", ORIGIN)
    assert exc.value.status == 400


@pytest.mark.parametrize(
    "value",
    ["", "partial;x", "final;", "final; ", "final", "finale;/files/a", "final;/other/a", "final;/files/",
     "final;/files/../a", "final;ftp://h/files/a", "final;/files/a?x=1", "final;" + "/files/a " * 1001],
)  # fmt: skip
def test_bad_concat_is_400(value: str) -> None:
    with pytest.raises(HTTPError) as exc:
        parse_concat(value, "/files/", ORIGIN)
    assert exc.value.status == 400


def test_every_name_a_store_keeps_beside_data_is_reserved() -> None:
    """One list of reserved names (protocol.urls) must cover what each store writes beside an upload."""
    from pytusd.locks.file import LOCK_DIR
    from pytusd.protocol.urls import RESERVED_ID_PREFIX, RESERVED_ID_SUFFIXES, is_valid_upload_id
    from pytusd.stores.file import FINALS_SUFFIX, INFO_SUFFIX, TEMP_DIR
    from pytusd.stores.s3.layout import FINALS_SUFFIX as S3_FINALS
    from pytusd.stores.s3.layout import INFO_SUFFIX as S3_INFO
    from pytusd.stores.s3.layout import PART_SUFFIX

    for suffix in (INFO_SUFFIX, FINALS_SUFFIX, S3_INFO, PART_SUFFIX, S3_FINALS.rstrip("/"), ".lock", ".stop"):
        assert suffix in RESERVED_ID_SUFFIXES
        assert not is_valid_upload_id(f"a/b{suffix}/c") and not is_valid_upload_id(f"ab{suffix}")
    for directory in (TEMP_DIR, LOCK_DIR):
        assert directory.startswith(RESERVED_ID_PREFIX) and not is_valid_upload_id(f"{directory}/x")
