"""Malformed and hostile input over a real pytusd process.

Every class of bad header or path gets a 4xx with a one-line plain-text reason: never a 5xx, never
a hang (every socket has a timeout), never a file outside the upload directory, never an upload
created or changed by a refused request, and never the hostile value echoed back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from tests.integration.tus_helpers import (
    OCTET,
    assert_plain_4xx,
    assert_rejected,
    b64,
    create,
    data_file,
    info_file,
    offset_of,
    outside_files,
    patch,
    running_server,
    tus_client,
    upload,
    upload_files,
    upload_id,
    url_path,
)
from tests.support.rawhttp import Connection, Response, build_request, raw_request
from tests.support.server import ServerProcess
from tests.support.wait import wait_until

MARK = "EVILMARKER"
PARTIAL = "application/partial-upload"

#: Values that are not a non-negative decimal integer of at most 63 bits.
BAD_NUMBERS: list[str | bytes] = [
    "-1",
    "-0",
    "+5",
    "5.0",
    "0x5",
    "0o5",
    "5e0",
    "1_0",
    "abc",
    "5 5",
    "5,5",
    "",
    "9223372036854775808",  # 2**63
    "18446744073709551616",  # 2**64
    "99999999999999999999999999999999999999",
    "1" * 5000,
    "\u0665".encode(),  # ARABIC-INDIC DIGIT FIVE: Python's int() would take it
    "\uff15".encode(),  # FULLWIDTH DIGIT FIVE
    f"5{MARK}",
]


def _ids(values: list[str | bytes]) -> list[str]:
    return [repr(v)[:40] for v in values]


#: Where a traversal that climbed out of the upload directory would land.
ESCAPE_NAME = "pytusd-escape"


@pytest.fixture
def guard(server: ServerProcess) -> Iterator[None]:
    """Nothing appears outside the upload directory during the test: not beside it (the parent
    temp dir, recursively), not one level further up, not in /tmp or /."""
    grandparent = server.upload_dir.parent.parent
    before = outside_files(server)
    before_up = sorted(p.name for p in grandparent.iterdir())
    yield
    assert outside_files(server) == before
    assert sorted(p.name for p in grandparent.iterdir()) == before_up
    for root in (server.upload_dir.parent, grandparent, Path("/tmp"), Path("/")):
        assert not (root / ESCAPE_NAME).exists(), root


def _forbidden(value: str | bytes) -> list[bytes]:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return [raw] if len(raw) >= 4 else [MARK.encode()]


def _send(
    server: ServerProcess, method: str, target: str, headers: dict[str, str | bytes], body: bytes = b""
) -> Response:
    """Over a raw socket: httpx refuses values with leading or trailing whitespace."""
    return raw_request(server, method, target, [("Tus-Resumable", "1.0.0"), *headers.items()], body)


def _assert_raw_rejected(response: Response, *, forbidden: Sequence[bytes] = ()) -> None:
    assert_plain_4xx(response.status, response.headers, response.body, forbidden=forbidden)


# == numbers ===================================================================================


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=_ids(BAD_NUMBERS))
def test_bad_upload_length_on_post(
    server: ServerProcess, client: httpx.Client, guard: None, value: str | bytes
) -> None:
    before = upload_files(server)
    response = _send(server, "POST", "/files/", {"Upload-Length": value})
    _assert_raw_rejected(response, forbidden=_forbidden(value))
    assert response.header("location") is None
    assert upload_files(server) == before


def test_upload_length_with_leading_whitespace(server: ServerProcess, client: httpx.Client) -> None:
    """' 5': RFC 9110 5.5 says leading and trailing whitespace is not part of a field value, so a
    server may legitimately read '5'; it must then mean exactly 5. Either way never a 5xx."""
    for value in (" 5", "\t5", "  5", "5 ", "5\t", " 5 "):
        response = _send(server, "POST", "/files/", {"Upload-Length": value})
        if response.status == 201:
            location = url_path(response.header("location") or "")
            assert client.head(location).headers["upload-length"] == "5"
        else:
            _assert_raw_rejected(response)


WHITESPACE_FIVES = [" 5", "\t5", "5 ", " 5 "]


@pytest.mark.parametrize("value", [*BAD_NUMBERS, *WHITESPACE_FIVES], ids=_ids([*BAD_NUMBERS, *WHITESPACE_FIVES]))
def test_bad_upload_offset_on_patch(
    server: ServerProcess, client: httpx.Client, guard: None, value: str | bytes
) -> None:
    url = create(client, 10)
    response = _send(server, "PATCH", url_path(url), {"Upload-Offset": value, "Content-Type": OCTET}, b"hello")
    _assert_raw_rejected(response, forbidden=_forbidden(value))
    assert offset_of(client, url) == 0
    assert data_file(server, url).stat().st_size == 0


def test_missing_upload_offset_on_patch(server: ServerProcess, client: httpx.Client) -> None:
    url = create(client, 10)
    response = client.patch(url, content=b"hello", headers={"Content-Type": OCTET})
    assert_rejected(response)
    assert data_file(server, url).stat().st_size == 0


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=_ids(BAD_NUMBERS))
def test_bad_upload_length_on_deferred_patch(
    server: ServerProcess, client: httpx.Client, guard: None, value: str | bytes
) -> None:
    url = create(client, None)
    headers: dict[str, str | bytes] = {"Upload-Offset": "0", "Upload-Length": value, "Content-Type": OCTET}
    response = _send(server, "PATCH", url_path(url), headers, b"hello")
    if value == "":
        # An empty Upload-Length on PATCH is read as "not given" (as tusd does): a plain write.
        assert response.status == 204, response
        assert response.header("upload-offset") == "5"
        assert client.head(url).headers["upload-defer-length"] == "1"
        return
    _assert_raw_rejected(response, forbidden=_forbidden(value))
    probe = client.head(url)
    assert probe.headers["upload-defer-length"] == "1"
    assert probe.headers["upload-offset"] == "0"
    assert data_file(server, url).stat().st_size == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Upload-Length": "5", "Upload-Defer-Length": "1"},
        {"Upload-Length": "0", "Upload-Defer-Length": "1"},
        {"Upload-Defer-Length": "2"},
        {"Upload-Defer-Length": "0"},
        {"Upload-Defer-Length": "true"},
        {"Upload-Defer-Length": "1 1"},
        {"Upload-Defer-Length": "-1"},
        {"Upload-Defer-Length": "01"},
        {"Upload-Defer-Length": ""},
        {"Upload-Defer-Length": MARK},
    ],
)
def test_length_and_defer_length_rules(server: ServerProcess, client: httpx.Client, headers: dict[str, str]) -> None:
    """Exactly one of Upload-Length and Upload-Defer-Length: 1; any other Upload-Defer-Length is 400."""
    before = upload_files(server)
    response = client.post("/files/", headers=headers)
    assert response.status_code == 400
    assert_rejected(response, forbidden=[MARK.encode()])
    assert upload_files(server) == before


def test_duplicate_number_headers(server: ServerProcess, client: httpx.Client) -> None:
    before = upload_files(server)
    response = client.post("/files/", headers=[("Upload-Length", "5"), ("Upload-Length", "6")])
    assert_rejected(response)
    assert upload_files(server) == before
    url = create(client, 10)
    twice = client.patch(
        url, content=b"ab", headers=[("Upload-Offset", "0"), ("Upload-Offset", "0"), ("Content-Type", OCTET)]
    )
    assert_rejected(twice)
    assert offset_of(client, url) == 0


# == metadata ==================================================================================

BAD_METADATA: list[str | bytes] = [
    f"{MARK} !!!!",
    f"{MARK} YQ",  # missing padding
    f"{MARK} YQ=",  # wrong padding
    f"{MARK} YQ==YQ==",
    f"{MARK} YQ==\\",
    f"{MARK} Y Q==",  # three parts
    f"{MARK} YQ== Yg==",
    f"{MARK} -_-_",  # base64url is not base64
    "a YQ==,a Yg==",  # duplicate keys
    "a,a",
    "a YQ==,,b Yg==",  # empty pair
    "a YQ==,",
    ",a YQ==",
    ",",
    f"{MARK}\u00e9 YQ==".encode(),  # non-ASCII key
    f"k {b64(MARK)}!".encode(),
]


@pytest.mark.parametrize("value", BAD_METADATA, ids=_ids(BAD_METADATA))
def test_bad_metadata(server: ServerProcess, value: str | bytes) -> None:
    before = upload_files(server)
    response = _send(server, "POST", "/files/", {"Upload-Length": "1", "Upload-Metadata": value})
    assert response.status == 400
    _assert_raw_rejected(response, forbidden=[MARK.encode(), b"YQ=="])
    assert upload_files(server) == before


@pytest.mark.parametrize("size", [64 * 1024 + 1, 200 * 1024, 1024 * 1024])
def test_oversized_metadata(server: ServerProcess, size: int) -> None:
    before = upload_files(server)
    value = "k " + "A" * (size - 2)
    response = raw_request(
        server, "POST", "/files/", [("Tus-Resumable", "1.0.0"), ("Upload-Length", "1"), ("Upload-Metadata", value)]
    )
    _assert_raw_rejected(response, forbidden=[b"AAAAAAAAAAAAAAAA"])
    assert upload_files(server) == before


def test_too_many_metadata_keys(server: ServerProcess, client: httpx.Client) -> None:
    before = upload_files(server)
    value = ",".join(f"k{i} YQ==" for i in range(5000))
    response = client.post("/files/", headers={"Upload-Length": "1", "Upload-Metadata": value})
    assert_rejected(response, forbidden=[b"k4999"])
    assert upload_files(server) == before


def test_metadata_value_never_echoed_raw(client: httpx.Client) -> None:
    """Metadata values are binary: HEAD re-encodes them, never puts decoded bytes in a header."""
    hostile = b"x\r\nSet-Cookie: session=evil\r\n\r\n<html>"
    url = create(client, 1, headers={"Upload-Metadata": f"filename {b64(hostile)},filetype {b64(hostile)}"})
    probe = client.head(url)
    assert "set-cookie" not in probe.headers
    for _, value in probe.headers.raw:
        assert b"session=evil" not in value
    assert probe.headers["upload-metadata"] == f"filename {b64(hostile)},filetype {b64(hostile)}"
    assert patch(client, url, b"z", 0).status_code == 204
    download = client.get(url)
    assert "set-cookie" not in download.headers
    for _, value in download.headers.raw:
        # The name may appear inside the quoted filename, but never as a header of its own.
        assert b"\r" not in value and b"\n" not in value


# == Upload-Concat =============================================================================


@pytest.fixture(scope="module")
def concat_targets(server: ServerProcess) -> Iterator[dict[str, str]]:
    with tus_client(server) as c:
        partial = create(c, 3, headers={"Upload-Concat": "partial"})
        assert patch(c, partial, b"abc", 0).status_code == 204
        normal = upload(c, b"abc")
        yield {"partial": url_path(partial), "normal": url_path(normal), "partial_abs": partial}


BAD_CONCAT = [
    "",
    "final;",
    "final; ",
    "final",
    "final {partial}",
    "final:{partial}",
    "partial;",
    "partial {partial}",
    "Partial",
    "FINAL;{partial}",
    "bogus",
    f"{MARK}",
    f"final;/{MARK}/abc",
    "final;/other/{pid}",
    "final;/files",
    "final;/files/",
    "final;http://evil.example/etc/passwd",
    # Another origin than the request's (raw requests say Host: localhost): not resolved by its path.
    "final;http://evil.example/files/{pid}",
    "final;//evil.example/files/{pid}",
    "final;https://localhost/files/{pid}",
    "final;http://localhost:1/files/{pid}",
    "final;http://user@localhost/files/{pid}",
    "final;http:/files/{pid}",
    "final;files/{pid}",
    "final;ftp://evil.example/files/{pid}",
    "final;/files/{pid}?x=1",
    "final;/files/{pid}#frag",
    "final;/files/../etc/passwd",
    "final;/files/%2e%2e/etc/passwd",
    "final;/files/..%2f..%2fetc%2fpasswd",
    "final;/files/{pid}/../{pid}",
    "final;{normal}",
    "final;{partial} {normal}",
    "final;/files/doesnotexist",
    "final;{partial} /files/0123456789abcdef0123456789abcdef",
    "final;/files/{pid}.info",
    "final;/files/.pytusd-tmp/x",
    "final;file:///etc/passwd",
    "final;" + " ".join(["{partial}"] * 2000),
]


@pytest.mark.parametrize("template", BAD_CONCAT, ids=[t[:40] for t in BAD_CONCAT])
def test_bad_upload_concat(
    server: ServerProcess, client: httpx.Client, guard: None, concat_targets: dict[str, str], template: str
) -> None:
    before = upload_files(server)
    value = template.format(pid=upload_id(concat_targets["partial_abs"]), **concat_targets)
    response = _send(server, "POST", "/files/", {"Upload-Length": "3", "Upload-Concat": value})
    final_response = _send(server, "POST", "/files/", {"Upload-Concat": value})
    for r in (response, final_response):
        _assert_raw_rejected(r, forbidden=[MARK.encode(), b"passwd"])
        assert r.header("location") is None
    assert upload_files(server) == before


def test_final_with_defer_length_400(client: httpx.Client, concat_targets: dict[str, str]) -> None:
    response = client.post(
        "/files/", headers={"Upload-Concat": "final;" + concat_targets["partial"], "Upload-Defer-Length": "1"}
    )
    assert response.status_code == 400
    assert_rejected(response)


def test_final_with_body_refused(server: ServerProcess, client: httpx.Client, concat_targets: dict[str, str]) -> None:
    before = upload_files(server)
    response = client.post(
        "/files/",
        content=b"abc",
        headers={"Upload-Concat": "final;" + concat_targets["partial"], "Content-Type": OCTET},
    )
    assert_rejected(response)
    assert upload_files(server) == before


def test_final_over_max_size_413(tmp_path_factory: pytest.TempPathFactory) -> None:
    with running_server(tmp_path_factory, ["--max-size", "4"]) as srv, tus_client(srv) as c:
        a = create(c, 3, headers={"Upload-Concat": "partial"})
        assert patch(c, a, b"abc", 0).status_code == 204
        before = upload_files(srv)
        response = c.post("/files/", headers={"Upload-Concat": f"final;{url_path(a)} {url_path(a)}"})
        assert response.status_code == 413
        assert_rejected(response)
        assert upload_files(srv) == before


# == checksum ==================================================================================

BAD_CHECKSUMS = [
    f"{MARK} YQ==",
    "sha3-256 YQ==",
    "SHA1 " + b64(b"x" * 20),
    "sha1",
    "sha1 ",
    " sha1",
    "sha1 !!!!",
    "sha1 YQ",
    "sha1 YQ==YQ==",
    f"sha1 {b64(b'x' * 20)} extra",
    "sha1  " + b64(b"x" * 20),
    "sha1:" + b64(b"x" * 20),
    f"sha1 {MARK}",
    "",
]


@pytest.mark.parametrize("value", BAD_CHECKSUMS, ids=[v[:40] for v in BAD_CHECKSUMS])
def test_bad_checksum_header(server: ServerProcess, client: httpx.Client, value: str) -> None:
    url = create(client, 10)
    response = raw_request(
        server,
        "PATCH",
        url_path(url),
        [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"), ("Content-Type", OCTET), ("Upload-Checksum", value)],
        b"hello",
    )
    assert response.status == 400, response  # refused as a header, before any body is read
    _assert_raw_rejected(response, forbidden=[MARK.encode()])
    assert offset_of(client, url) == 0
    assert data_file(server, url).stat().st_size == 0


def test_checksum_digest_of_wrong_length(server: ServerProcess, client: httpx.Client) -> None:
    url = create(client, 10)
    response = patch(client, url, b"hello", 0, headers={"Upload-Checksum": "sha1 YQ=="})
    assert response.status_code == 460  # a digest that cannot match: a checksum mismatch
    assert_rejected(response)
    assert offset_of(client, url) == 0


# == Content-Type and sizes ====================================================================


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/octet-stream", f"{MARK}/x"])
def test_wrong_content_type_on_patch_415(server: ServerProcess, client: httpx.Client, content_type: str | None) -> None:
    url = create(client, 10)
    headers = {"Upload-Offset": "0"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.patch(url, content=b"hello", headers=headers)
    assert response.status_code == 415
    assert_rejected(response, forbidden=[MARK.encode()])
    assert data_file(server, url).stat().st_size == 0


def test_patch_longer_than_length_413_with_content_length(server: ServerProcess, client: httpx.Client) -> None:
    url = create(client, 10)
    assert patch(client, url, b"01234", 0).status_code == 204
    response = patch(client, url, b"56789ABCDEF", 5)
    assert response.status_code == 413
    assert_rejected(response)
    # Content-Length says it cannot fit: refused before a byte is read.
    assert data_file(server, url).read_bytes() == b"01234"
    assert offset_of(client, url) == 5


def test_patch_longer_than_length_413_chunked(server: ServerProcess, client: httpx.Client) -> None:
    url = create(client, 10)

    def body() -> Iterator[bytes]:
        yield b"0123"
        yield b"456789"
        yield b"OVERFLOW" * 100

    response = client.patch(url, content=body(), headers={"Upload-Offset": "0", "Content-Type": OCTET})
    assert response.status_code == 413
    assert_rejected(response)
    stored = data_file(server, url).read_bytes()
    assert stored == b"0123456789"  # what fits is kept, the body is cut at the length
    assert offset_of(client, url) == 10


def test_creation_with_upload_longer_than_length(server: ServerProcess, client: httpx.Client) -> None:
    response = client.post("/files/", content=b"0123456789", headers={"Upload-Length": "4", "Content-Type": OCTET})
    assert response.status_code == 413
    assert_rejected(response)
    assert "location" not in response.headers  # refused before the upload is created


def test_content_length_and_transfer_encoding_smuggling(server: ServerProcess, client: httpx.Client) -> None:
    url = create(client, 10)
    request = build_request(
        "PATCH",
        url_path(url),
        [
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Offset", "0"),
            ("Content-Type", OCTET),
            ("Content-Length", "3"),
            ("Transfer-Encoding", "chunked"),
        ],
        b"3\r\nabc\r\n0\r\n\r\n",
    )
    with Connection(server) as conn:
        conn.send(request)
        response = conn.read_response(method="PATCH")
    # RFC 9112 6.3 lets a server reject both together or ignore Content-Length; uvicorn's parser rejects.
    assert response.status == 400, response
    _assert_raw_rejected(response)
    assert offset_of(client, url) == 0


def test_conflicting_content_lengths(server: ServerProcess, client: httpx.Client) -> None:
    url = create(client, 10)
    response = raw_request(
        server,
        "PATCH",
        url_path(url),
        [
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Offset", "0"),
            ("Content-Type", OCTET),
            ("Content-Length", "3"),
            ("Content-Length", "5"),
        ],
        b"abcde",
        content_length=False,
    )
    _assert_raw_rejected(response)
    assert offset_of(client, url) == 0


# == Tus-Resumable and method override ===========================================================


@pytest.mark.parametrize("version", ["1.0.0, 1.0.0", "1.0.00", "v1.0.0", "1.0.0;q=1", MARK])
def test_bad_tus_resumable(server: ServerProcess, version: str) -> None:
    before = upload_files(server)
    response = raw_request(server, "POST", "/files/", [("Tus-Resumable", version), ("Upload-Length", "1")])
    assert response.status == 412
    _assert_raw_rejected(response, forbidden=[MARK.encode()])
    assert upload_files(server) == before


def test_tus_resumable_with_surrounding_whitespace(server: ServerProcess) -> None:
    """RFC 9110 5.5: whitespace around a field value is not part of it: the upload is created."""
    for version in ("1.0.0 ", " 1.0.0", "\t1.0.0\t"):
        response = raw_request(server, "POST", "/files/", [("Tus-Resumable", version), ("Upload-Length", "1")])
        assert response.status == 201, (version, response.status)


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "FOO", MARK, "PATCH, DELETE", "GET / HTTP/1.1"])
def test_bad_method_override(server: ServerProcess, client: httpx.Client, method: str) -> None:
    url = upload(client, b"keep")
    response = client.post(url, headers={"X-HTTP-Method-Override": method})
    assert_rejected(response, forbidden=[MARK.encode()])
    assert client.get(url).content == b"keep"


# == control characters (raw socket: httpx refuses to send them) ================================

CONTROL_HEADERS: list[tuple[bytes, bytes]] = [
    (b"Upload-Length", b"5\x00"),
    (b"Upload-Length", b"\x005"),
    (b"Upload-Length", b"5\x01"),
    (b"Upload-Length", b"5\x7f"),
    (b"Upload-Length", b"5\x1b[31m"),
    (b"Upload-Length", b"5\rX-Injected: 1"),
    (b"Upload-Length", b"5\x0b"),
    (b"Upload-Length", b"5\x0c"),
    (b"Upload-Metadata", b"k\x00 YQ=="),
    (b"Upload-Metadata", b"k \x01YQ=="),
    (b"Upload-Metadata", b"k YQ==\x7f"),
    (b"Upload-Metadata", b"k\tYQ=="),
    (b"Upload-Metadata", b"k YQ==\r"),
    (b"Upload-Metadata", b"k\xff YQ=="),
    (b"Upload-Concat", b"partial\x00"),
    (b"Upload-Concat", b"final;/files/a\x00b"),
    (b"Tus-Resumable", b"1.0.0\x00"),
    (b"Upload-Defer-Length", b"1\x00"),
    (b"X-HTTP-Method-Over\x00ride", b"DELETE"),
    (b"Upload-Len\x01gth", b"5"),
    (b"Upload Length", b"5"),
    (b"Upload-Length\t", b"5"),
    (b"\x00", b"5"),
]


@pytest.mark.parametrize(("name", "value"), CONTROL_HEADERS, ids=[repr(n + b": " + v)[:40] for n, v in CONTROL_HEADERS])
def test_control_characters_in_headers(server: ServerProcess, guard: None, name: bytes, value: bytes) -> None:
    before = upload_files(server)
    headers: list[tuple[str | bytes, str | bytes]] = [("Tus-Resumable", "1.0.0")]
    if name.lower() != b"upload-length":
        headers.append(("Upload-Length", "5"))
    headers.append((name, value))
    if name.lower() == b"tus-resumable":
        headers = headers[1:]
    response = raw_request(server, "POST", "/files/", headers)
    _assert_raw_rejected(response, forbidden=[b"X-Injected"])
    assert response.header("x-injected") is None
    assert upload_files(server) == before


def test_obsolete_line_folding(server: ServerProcess) -> None:
    before = upload_files(server)
    request = (
        b"POST /files/ HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n"
        b"Upload-Length: 5\r\nUpload-Metadata: k YQ==\r\n , evil YQ==\r\nContent-Length: 0\r\n\r\n"
    )
    with Connection(server) as conn:
        conn.send(request)
        response = conn.read_response(method="POST")
    # RFC 9112 5.2: a server either rejects obs-fold with 400 or replaces it with spaces; uvicorn's
    # parser rejects it.
    assert response.status == 400, response
    _assert_raw_rejected(response)
    assert upload_files(server) == before


def test_control_characters_in_patch_headers(server: ServerProcess, client: httpx.Client) -> None:
    url = create(client, 10)
    for name, value in [
        (b"Upload-Offset", b"0\x00"),
        (b"Upload-Checksum", b"sha1 \x01YQ=="),
        (b"Content-Type", OCTET.encode() + b"\x00"),
    ]:
        headers: list[tuple[str | bytes, str | bytes]] = [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0")]
        headers = [h for h in headers if h[0] != name.decode()]
        if name != b"Content-Type":
            headers.append(("Content-Type", OCTET))
        headers.append((name, value))
        response = raw_request(server, "PATCH", url_path(url), headers, b"hello")
        _assert_raw_rejected(response)
        assert offset_of(client, url) == 0


# == paths =====================================================================================

TRAVERSAL_PATHS: list[bytes] = [
    b"/files/../x",
    b"/files/../../../../../../tmp/pytusd-escape",
    b"/files/..",
    b"/files/.",
    b"/files/./x",
    b"/files/x/..",
    b"/files/x/../y",
    b"/files/..%2fx",
    b"/files/..%2f..%2fpytusd-escape",
    b"/files/%2e%2e/x",
    b"/files/%2e%2e%2fx",
    b"/files/%2E%2E%2Fx",
    b"/files/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    b"/files/%2e%2e%2f%2e%2e%2fpytusd-escape",
    b"/files/%252e%252e%252fpytusd-escape",
    b"/files/%252e%252e/%252e%252e/pytusd-escape",
    b"/files/%25252e%25252e%25252fpytusd-escape",
    b"/files/..\\pytusd-escape",
    b"/files/..%5cpytusd-escape",
    b"/files/%5c..%5cpytusd-escape",
    b"/files/..%255cpytusd-escape",
    b"/files//etc/passwd",
    b"/files/%2fetc%2fpasswd",
    b"/files//tmp/pytusd-escape",
    b"/files/C:%5cWindows%5cwin.ini",
    b"/files/C:/Windows/win.ini",
    b"/files/x%00",
    b"/files/x%00.info",
    b"/files/%00",
    b"/files/..%00/x",
    b"/files/%c0%ae%c0%ae/pytusd-escape",
    b"/files/%e0%80%ae%e0%80%ae/pytusd-escape",
    b"/files/.pytusd-tmp/x",
    b"/files/.pytusd-locks/x",
    b"/files/.pytusd-locks/x.lock",
    b"/../files/x",
    b"//files/x",
    b"/files/~/x",
    b"http://localhost/files/../pytusd-escape",
    b"/files/" + b"a" * 300,
    b"/files/" + b"a/" * 200 + b"x",
]


@pytest.mark.parametrize("target", TRAVERSAL_PATHS, ids=[repr(t)[:50] for t in TRAVERSAL_PATHS])
def test_path_traversal(server: ServerProcess, guard: None, target: bytes) -> None:
    before = upload_files(server)
    base: list[tuple[str | bytes, str | bytes]] = [("Tus-Resumable", "1.0.0")]
    attempts: list[tuple[str, list[tuple[str | bytes, str | bytes]], bytes]] = [
        ("POST", [*base, ("Upload-Length", "5")], b""),
        ("POST", [*base, ("Upload-Length", "5"), ("Content-Type", OCTET)], b"hello"),
        ("PATCH", [*base, ("Upload-Offset", "0"), ("Content-Type", OCTET)], b"hello"),
        ("HEAD", base, b""),
        ("GET", base, b""),
        ("DELETE", base, b""),
        ("POST", [*base, ("X-HTTP-Method-Override", "PATCH"), ("Upload-Offset", "0"), ("Content-Type", OCTET)], b"x"),
    ]
    for method, headers, body in attempts:
        response = raw_request(server, method, target, headers, body)
        assert 400 <= response.status < 500, (method, target, response.status)
        if method != "HEAD":
            _assert_raw_rejected(response, forbidden=[b"root:", b"[fonts]"])
    assert upload_files(server) == before


def test_raw_nul_and_space_in_request_line(server: ServerProcess, guard: None) -> None:
    before = upload_files(server)
    for target in (b"/files/a\x00b", b"/files/a b", b"/files/a\tb", b"/files/\xff\xfe"):
        for method in ("HEAD", "PATCH", "POST"):
            headers = [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"), ("Content-Type", OCTET)]
            response = raw_request(server, method, target, headers, b"x")
            assert 400 <= response.status < 500, (method, target, response.status)
    assert upload_files(server) == before


def test_info_file_is_not_an_upload(server: ServerProcess, client: httpx.Client) -> None:
    """The server's own files beside an upload are never reachable as uploads."""
    url = upload(client, b"data", headers={"Upload-Metadata": f"secret {b64(MARK)}"})
    uid = upload_id(url)
    for suffix in (".info", ".lock", ".tmp", ".part", ".stop"):
        target = f"/files/{uid}{suffix}"
        assert client.get(target).status_code == 404
        assert client.head(target).status_code == 404
        assert client.delete(target).status_code == 404
        response = patch(client, target, b"{}", 0)
        assert 400 <= response.status_code < 500
        assert MARK.encode() not in client.get(target).content
    assert info_file(server, url).exists()
    assert client.get(url).content == b"data"


def test_existing_upload_not_reachable_through_dot_segments(server: ServerProcess, client: httpx.Client) -> None:
    url = upload(client, b"data")
    uid = upload_id(url)
    for target in (f"/files/x/../{uid}", f"/files/./{uid}", f"/files/{uid}/.", f"/files//{uid}"):
        response = raw_request(server, "DELETE", target, [("Tus-Resumable", "1.0.0")])
        assert 400 <= response.status < 500, target
    assert client.get(url).content == b"data"


# == timeouts: nothing hangs ====================================================================


def test_truncated_request_head_does_not_hang(server: ServerProcess, client: httpx.Client) -> None:
    """A client that stops mid-header does not block others."""
    with Connection(server) as stuck:
        stuck.send(b"POST /files/ HTTP/1.1\r\nHost: localhost\r\nUpload-Len")
        url = create(client, 1)
        assert client.head(url).status_code == 200


def test_lying_content_length_short_body(server: ServerProcess, client: httpx.Client) -> None:
    """Content-Length larger than what is sent, then the client goes away: what arrived is kept or
    dropped, the server answers other requests, the offset matches the data file."""
    url = create(client, 100)
    with Connection(server) as conn:
        conn.send(
            build_request(
                "PATCH",
                url_path(url),
                [
                    ("Tus-Resumable", "1.0.0"),
                    ("Upload-Offset", "0"),
                    ("Content-Type", OCTET),
                    ("Content-Length", "100"),
                ],
                b"x" * 10,
            )
        )
    # Once the server has seen the disconnect, HEAD and the data file agree.
    assert wait_until(lambda: int(client.head(url).headers["upload-offset"]) == data_file(server, url).stat().st_size)
    assert data_file(server, url).stat().st_size <= 10
    assert client.head(url).status_code == 200


@pytest.mark.parametrize("below", ["x", "x/y", "x/y/z", "x.bin"])
def test_paths_below_an_existing_upload(server: ServerProcess, client: httpx.Client, below: str) -> None:
    """``/files/ID/x``: on disk that path leads through ID's data file (NotADirectoryError, not
    FileNotFoundError); every method and both protocols answer 404-ish, never 500."""
    url = upload(client, b"data")
    target = f"{url_path(url)}/{below}"
    tus: list[tuple[str | bytes, str | bytes]] = [("Tus-Resumable", "1.0.0")]
    ietf: list[tuple[str | bytes, str | bytes]] = [("Upload-Draft-Interop-Version", "6")]
    attempts: list[tuple[str, list[tuple[str | bytes, str | bytes]], bytes]] = [
        ("HEAD", tus, b""),
        ("GET", tus, b""),
        ("PATCH", [*tus, ("Upload-Offset", "0"), ("Content-Type", OCTET)], b"abc"),
        ("DELETE", tus, b""),
        ("HEAD", ietf, b""),
        ("PATCH", [*ietf, ("Upload-Offset", "0"), ("Upload-Complete", "?1"), ("Content-Type", PARTIAL)], b"abc"),
        ("POST", [*tus, ("Upload-Concat", f"final;{target}")], b""),
    ]
    for method, headers, body in attempts:
        response = raw_request(server, method, target if method != "POST" else b"/files/", headers, body)
        assert 400 <= response.status < 500, (method, headers, response.status)
        if method != "HEAD":
            _assert_raw_rejected(response)
    assert client.get(url).content == b"data"
    assert offset_of(client, url) == 4


def test_a_body_in_one_byte_chunks_is_stored_whole(server: ServerProcess, client: httpx.Client) -> None:
    """256 KiB sent as 262,144 chunks of one byte (chunked coding): answered, every byte stored in
    order, and the server answers another connection right after (it was quadratic: 1 MiB took
    18 s and held the worker). The per-chunk gathering itself is tested in tests/unit/test_serving.py."""
    size = 256 * 1024
    data = bytes((i * 7) % 256 for i in range(size))
    url = create(client, size)
    headers: list[tuple[str | bytes, str | bytes]] = [
        ("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"), ("Content-Type", OCTET), ("Transfer-Encoding", "chunked"),
    ]  # fmt: skip
    body = b"".join(b"1\r\n" + data[i : i + 1] + b"\r\n" for i in range(size)) + b"0\r\n\r\n"
    response = raw_request(server, "PATCH", url_path(url), headers, body)
    assert response.status == 204, response
    assert offset_of(client, url) == size
    assert client.get(url).content == data
    assert client.options("/files/").status_code in (200, 204)


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "text/plain", "multipart/form-data"])
def test_creation_with_upload_of_another_type_415(
    server: ServerProcess, client: httpx.Client, content_type: str | None
) -> None:
    """As for PATCH: refused with 415 before anything is created, never created with the body dropped."""
    before = upload_files(server)
    headers = {"Upload-Length": "5"} | ({"Content-Type": content_type} if content_type else {})
    response = client.post("/files/", content=b"hello", headers=headers)
    assert response.status_code == 415
    assert_rejected(response)
    assert "location" not in response.headers
    assert upload_files(server) == before


@pytest.mark.parametrize("shape", ["one huge header", "many headers", "huge trailers", "huge checksum trailers"])
def test_oversized_request_head_431(server: ServerProcess, client: httpx.Client, shape: str) -> None:
    """More than 64 KiB of request line and headers (or of trailers) is refused with 431, before
    anything is created; the server goes on answering. Huge trailers come after the body: what it
    carried may be stored (the offset says so), unless a checksum trailer was announced, which can
    then not be checked: nothing is stored."""
    url = create(client, 5)
    before = upload_files(server)
    base: list[tuple[str | bytes, str | bytes]] = [("Tus-Resumable", "1.0.0")]
    if shape == "one huge header":
        response = raw_request(server, "POST", "/files/", [*base, ("Upload-Length", "5"), ("X-Big", "a" * 70_000)])
    elif shape == "many headers":
        many = [(f"X-H{i}", "v" * 60) for i in range(1500)]
        response = raw_request(server, "POST", "/files/", [*base, ("Upload-Length", "5"), *many])
    else:
        head = [*base, ("Upload-Offset", "0"), ("Content-Type", OCTET), ("Transfer-Encoding", "chunked")]
        if shape == "huge checksum trailers":
            head.append(("Trailer", "Upload-Checksum"))
        body = b"5\r\nhello\r\n0\r\n" + b"".join(b"X-T%d: %s\r\n" % (i, b"t" * 60) for i in range(1500)) + b"\r\n"
        response = raw_request(server, "PATCH", url_path(url), head, body)
    assert response.status == 431, response
    assert_plain_4xx(response.status, response.headers, response.body)
    assert upload_files(server) == before
    offset = offset_of(client, url)
    assert offset in (0, 5) if shape == "huge trailers" else offset == 0
    if offset < 5:  # what was kept is the body's start: the rest completes the upload byte-exact
        assert patch(client, url, b"hello"[offset:], offset).status_code == 204
    assert client.get(url).content == b"hello"
