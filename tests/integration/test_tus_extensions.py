"""tus 1.0.0 extensions over a real pytusd process: creation, creation-with-upload,
creation-defer-length, checksum, termination, concatenation and concatenation-unfinished.

Expiration has its own module (test_expiration.py): it needs servers with short expiry times.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import zlib
from base64 import b64encode
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from tests.integration.tus_helpers import (
    INTERNAL_DIRS,
    OCTET,
    b64,
    create,
    data_file,
    extensions,
    info_file,
    offset_of,
    patch,
    running_server,
    split_list,
    tus_client,
    upload,
    upload_files,
    upload_id,
    url_path,
)
from tests.support.rawhttp import Connection, build_request, chunked
from tests.support.server import ServerProcess
from tests.support.wait import wait_until

Factory = Callable[..., ServerProcess]


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """--max-size 100"""
    with running_server(tmp_path_factory, ["--max-size", "100"]) as srv:
        yield srv


# == creation ==================================================================================


def test_creation_201_with_location(server: ServerProcess, client: httpx.Client) -> None:
    """POST: 201 Created and a Location (absolute or relative) of the new resource, offset 0."""
    response = client.post("/files/", headers={"Upload-Length": "100"})
    assert response.status_code == 201
    location = response.headers["location"]
    url = str(client.base_url.join(location))
    assert urlsplit(url).path.startswith("/files/")
    probe = client.head(url)
    assert probe.status_code == 200
    assert probe.headers["upload-offset"] == "0"
    assert probe.headers["upload-length"] == "100"
    assert data_file(server, url).exists()


def test_creation_without_trailing_slash(client: httpx.Client) -> None:
    response = client.post("/files", headers={"Upload-Length": "1"})
    assert response.status_code == 201
    assert client.head(response.headers["location"]).status_code == 200


def test_creation_ids_are_unique(client: httpx.Client) -> None:
    urls = {create(client, 1) for _ in range(20)}
    assert len(urls) == 20


def test_creation_zero_length_is_complete_at_once(client: httpx.Client) -> None:
    """Upload-Length: 0 -> immediately complete without any PATCH."""
    url = create(client, 0)
    probe = client.head(url)
    assert probe.headers["upload-offset"] == "0"
    assert probe.headers["upload-length"] == "0"
    download = client.get(url)
    assert download.status_code == 200
    assert download.content == b""


def test_creation_advertised(client: httpx.Client) -> None:
    assert "creation" in extensions(client)


@pytest.mark.parametrize(
    "metadata",
    [
        "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential",
        "is_confidential",
        "a YQ==,b Yg==,c Yw==",
        "name bnVsbA==,type,filetype dGV4dC9wbGFpbg==,relativePath bnVsbA==",
        "k " + b64(bytes(range(256))),
        "evil " + b64("x\r\nSet-Cookie: a=b"),
    ],
)
def test_metadata_round_trip(client: httpx.Client, metadata: str) -> None:
    """Upload-Metadata: HEAD MUST include it with its value as specified at creation."""
    url = create(client, 1, headers={"Upload-Metadata": metadata})
    probe = client.head(url)
    assert probe.headers["upload-metadata"] == metadata
    assert "set-cookie" not in probe.headers


def test_metadata_key_only_with_trailing_space(client: httpx.Client) -> None:
    """The value MAY be empty; the separating space MAY be left out (both spellings accepted)."""
    url = create(client, 1, headers={"Upload-Metadata": "empty ,other YQ=="})
    pairs = {}
    for pair in client.head(url).headers["upload-metadata"].split(","):
        key, _, value = pair.partition(" ")
        pairs[key] = value
    assert pairs == {"empty": "", "other": "YQ=="}


def test_metadata_empty_header_accepted(client: httpx.Client) -> None:
    """tuspy sends an empty Upload-Metadata when there is no metadata: accept it."""
    response = client.post("/files/", headers={"Upload-Length": "1", "Upload-Metadata": ""})
    assert response.status_code == 201
    probe = client.head(response.headers["location"])
    assert probe.headers.get("upload-metadata", "") == ""


def test_no_metadata_no_header(client: httpx.Client) -> None:
    url = create(client, 1)
    assert "upload-metadata" not in client.head(url).headers


def test_max_size_413_and_nothing_created(limited: ServerProcess) -> None:
    """Tus-Max-Size: a length over the maximum MUST be answered with 413."""
    with tus_client(limited) as c:
        assert c.options("/files/").headers["tus-max-size"] == "100"
        before = upload_files(limited)
        response = c.post("/files/", headers={"Upload-Length": "101"})
        assert response.status_code == 413
        assert "location" not in response.headers
        assert upload_files(limited) == before
        assert c.post("/files/", headers={"Upload-Length": "100"}).status_code == 201


# == creation-with-upload ======================================================================


def test_creation_with_upload_whole_body(client: httpx.Client) -> None:
    """creation-with-upload: 201 with Upload-Offset after applying the body."""
    assert "creation-with-upload" in extensions(client)
    response = client.post("/files/", content=b"hello", headers={"Upload-Length": "5", "Content-Type": OCTET})
    assert response.status_code == 201
    assert response.headers["upload-offset"] == "5"
    url = str(client.base_url.join(response.headers["location"]))
    assert client.get(url).content == b"hello"


def test_creation_with_upload_partial_body_then_patch(client: httpx.Client) -> None:
    response = client.post("/files/", content=b"hello", headers={"Upload-Length": "11", "Content-Type": OCTET})
    assert response.status_code == 201
    assert response.headers["upload-offset"] == "5"
    url = str(client.base_url.join(response.headers["location"]))
    assert offset_of(client, url) == 5
    assert patch(client, url, b" world", 5).headers["upload-offset"] == "11"
    assert client.get(url).content == b"hello world"


def test_creation_with_upload_deferred_length(client: httpx.Client) -> None:
    response = client.post("/files/", content=b"abc", headers={"Upload-Defer-Length": "1", "Content-Type": OCTET})
    assert response.status_code == 201
    assert response.headers["upload-offset"] == "3"


def test_creation_with_upload_empty_body_has_offset_zero(client: httpx.Client) -> None:
    response = client.post("/files/", content=b"", headers={"Upload-Length": "3", "Content-Type": OCTET})
    assert response.status_code == 201
    assert response.headers["upload-offset"] == "0"


def test_creation_with_upload_checksum(client: httpx.Client) -> None:
    good = b64(hashlib.sha1(b"hello").digest())
    response = client.post(
        "/files/",
        content=b"hello",
        headers={"Upload-Length": "10", "Content-Type": OCTET, "Upload-Checksum": f"sha1 {good}"},
    )
    assert response.status_code == 201
    assert response.headers["upload-offset"] == "5"
    bad = client.post(
        "/files/",
        content=b"hello",
        headers={"Upload-Length": "10", "Content-Type": OCTET, "Upload-Checksum": f"sha1 {b64(b'x' * 20)}"},
    )
    assert bad.status_code == 460
    if "location" in bad.headers:
        assert offset_of(client, str(client.base_url.join(bad.headers["location"]))) == 0


def test_expect_100_continue_before_body(server: ServerProcess, client: httpx.Client) -> None:
    """creation-with-upload: with Expect: 100-continue the server answers 100 before the body is sent."""
    headers = [
        ("Tus-Resumable", "1.0.0"),
        ("Upload-Length", "5"),
        ("Content-Type", OCTET),
        ("Content-Length", "5"),
        ("Expect", "100-continue"),
    ]
    with Connection(server) as conn:
        conn.send(build_request("POST", "/files/", headers, b""))
        interim = conn.read_head()
        assert interim.status == 100
        conn.send(b"hello")
        final = conn.read_response(method="POST")
    assert final.status == 201
    assert final.header("upload-offset") == "5"
    assert client.get(url_path(final.header("location") or "")).content == b"hello"


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ([("Upload-Length", "1000"), ("Tus-Resumable", "1.0.0")], 413),
        ([("Upload-Length", "5"), ("Tus-Resumable", "0.2.2")], 412),
        ([("Upload-Length", "5"), ("Tus-Resumable", "1.0.0"), ("Upload-Metadata", "a !!")], 400),
        ([("Tus-Resumable", "1.0.0")], 400),
    ],
)
def test_expect_100_continue_not_sent_for_rejected_create(
    limited: ServerProcess, extra: list[tuple[str, str]], status: int
) -> None:
    """A create the server refuses gets its final status at once, never a 100 first."""
    before = upload_files(limited)
    headers = [*extra, ("Content-Type", OCTET), ("Content-Length", "5"), ("Expect", "100-continue")]
    with Connection(limited) as conn:
        conn.send(build_request("POST", "/files/", headers, b""))
        response = conn.read_message("POST")
    assert response.status == status
    assert upload_files(limited) == before


def test_expect_100_continue_on_patch(server: ServerProcess, client: httpx.Client) -> None:
    """PATCH with Expect: 100-continue: 100 before the body when accepted; a 409 comes without a 100."""
    url = create(client, 5)
    base = [("Tus-Resumable", "1.0.0"), ("Content-Type", OCTET), ("Content-Length", "5"), ("Expect", "100-continue")]
    with Connection(server) as conn:
        conn.send(build_request("PATCH", url_path(url), [*base, ("Upload-Offset", "3")], b""))
        refused = conn.read_message("PATCH")
    assert refused.status == 409
    with Connection(server) as conn:
        conn.send(build_request("PATCH", url_path(url), [*base, ("Upload-Offset", "0")], b""))
        assert conn.read_head().status == 100
        conn.send(b"hello")
        done = conn.read_response(method="PATCH")
    assert done.status == 204
    assert done.header("upload-offset") == "5"
    with Connection(server) as conn:
        conn.send(build_request("PATCH", "/files/doesnotexist", [*base, ("Upload-Offset", "0")], b""))
        missing = conn.read_message("PATCH")
    assert missing.status == 404


# == creation-defer-length =====================================================================


def test_defer_length_head_and_later_length(client: httpx.Client) -> None:
    """Upload-Defer-Length: 1 in HEAD while unknown; the next PATCH sets Upload-Length."""
    assert "creation-defer-length" in extensions(client)
    url = create(client, None)
    probe = client.head(url)
    assert probe.headers["upload-defer-length"] == "1"
    assert "upload-length" not in probe.headers
    assert probe.headers["upload-offset"] == "0"

    first = patch(client, url, b"hello", 0)
    assert first.status_code == 204
    assert first.headers["upload-offset"] == "5"
    still = client.head(url)
    assert still.headers["upload-defer-length"] == "1"
    assert "upload-length" not in still.headers

    second = patch(client, url, b" world", 5, headers={"Upload-Length": "11"})
    assert second.status_code == 204
    assert second.headers["upload-offset"] == "11"
    done = client.head(url)
    assert done.headers["upload-length"] == "11"
    assert "upload-defer-length" not in done.headers
    assert client.get(url).content == b"hello world"


def test_defer_length_set_with_empty_patch(client: httpx.Client) -> None:
    url = create(client, None)
    assert patch(client, url, b"abc", 0).status_code == 204
    response = patch(client, url, b"", 3, headers={"Upload-Length": "6"})
    assert response.status_code == 204
    probe = client.head(url)
    assert probe.headers["upload-length"] == "6"
    assert "upload-defer-length" not in probe.headers


def test_defer_length_cannot_change_once_set(client: httpx.Client) -> None:
    """Once set the length MUST NOT be changed."""
    url = create(client, None)
    assert patch(client, url, b"ab", 0, headers={"Upload-Length": "10"}).status_code == 204
    response = patch(client, url, b"cd", 2, headers={"Upload-Length": "12"})
    assert 400 <= response.status_code < 500
    probe = client.head(url)
    assert probe.headers["upload-length"] == "10"
    assert probe.headers["upload-offset"] == "2"


def test_upload_length_on_patch_cannot_change_a_known_length(client: httpx.Client) -> None:
    url = create(client, 10)
    response = patch(client, url, b"ab", 0, headers={"Upload-Length": "20"})
    assert 400 <= response.status_code < 500
    assert client.head(url).headers["upload-length"] == "10"
    assert offset_of(client, url) == 0


def test_defer_length_smaller_than_received_refused(client: httpx.Client) -> None:
    url = create(client, None)
    assert patch(client, url, b"hello", 0).status_code == 204
    response = patch(client, url, b"", 5, headers={"Upload-Length": "3"})
    assert 400 <= response.status_code < 500
    assert client.head(url).headers["upload-defer-length"] == "1"


def test_defer_length_grows_past_max_size_413(limited: ServerProcess) -> None:
    """A deferred upload may not grow past --max-size: 413, nothing past the limit stored."""
    with tus_client(limited) as c:
        url = create(c, None)
        assert patch(c, url, b"a" * 60, 0).status_code == 204
        # With a Content-Length the server can refuse up front.
        refused = patch(c, url, b"b" * 60, 60)
        assert refused.status_code == 413
        offset = offset_of(c, url)
        assert offset == 60  # refused before a byte is read
        assert data_file(limited, url).stat().st_size == offset

        # A chunked body announces nothing: the server must cut it at the limit.
        def chunks() -> Iterator[bytes]:
            for _ in range(10):
                yield b"c" * 20

        streamed = c.patch(url, content=chunks(), headers={"Upload-Offset": str(offset), "Content-Type": OCTET})
        assert streamed.status_code == 413
        size = data_file(limited, url).stat().st_size
        assert size == 100  # cut at the limit, what fits is kept
        assert offset_of(c, url) == size
        assert c.head(url).headers.get("upload-defer-length") == "1"


def test_defer_length_declared_over_max_size_413(limited: ServerProcess) -> None:
    with tus_client(limited) as c:
        url = create(c, None)
        response = patch(c, url, b"abc", 0, headers={"Upload-Length": "101"})
        assert response.status_code == 413
        assert offset_of(c, url) == 0
        assert data_file(limited, url).stat().st_size == 0


# == checksum ==================================================================================


def _digest(algorithm: str, data: bytes) -> str:
    if algorithm == "crc32":
        return b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    return b64encode(hashlib.new(algorithm, data).digest()).decode()


ALGORITHMS = ["sha1", "md5", "sha256", "sha512", "crc32"]


def test_checksum_advertised(client: httpx.Client) -> None:
    """Tus-Checksum-Algorithm MUST be in the OPTIONS response; sha1 MUST be supported; lowercase ASCII."""
    response = client.options("/files/")
    assert "checksum" in split_list(response.headers["tus-extension"])
    algorithms = split_list(response.headers["tus-checksum-algorithm"])
    assert "sha1" in algorithms
    for name in algorithms:
        assert name.isascii() and name == name.lower(), name
    for name in ALGORITHMS:
        assert name in algorithms, name


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checksum_match_204(server: ServerProcess, client: httpx.Client, algorithm: str) -> None:
    url = create(client, 11)
    first = patch(client, url, b"hello", 0, headers={"Upload-Checksum": f"{algorithm} {_digest(algorithm, b'hello')}"})
    assert first.status_code == 204
    second_sum = f"{algorithm} {_digest(algorithm, b' world')}"
    response = patch(client, url, b" world", 5, headers={"Upload-Checksum": second_sum})
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "11"
    assert data_file(server, url).read_bytes() == b"hello world"


def test_checksum_spec_example(client: httpx.Client) -> None:
    url = create(client, 11)
    response = patch(client, url, b"hello world", 0, headers={"Upload-Checksum": "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="})
    assert response.status_code == 204
    assert response.headers["upload-offset"] == "11"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checksum_mismatch_460_discards_chunk(server: ServerProcess, client: httpx.Client, algorithm: str) -> None:
    """460 on mismatch; the chunk MUST be discarded, offset not updated."""
    url = create(client, 11)
    assert patch(client, url, b"hello", 0).status_code == 204
    wrong = _digest(algorithm, b"something else")
    response = patch(client, url, b" world", 5, headers={"Upload-Checksum": f"{algorithm} {wrong}"})
    assert response.status_code == 460
    assert offset_of(client, url) == 5
    assert data_file(server, url).read_bytes() == b"hello"
    # The client can retry the same chunk.
    right = f"{algorithm} {_digest(algorithm, b' world')}"
    retry = patch(client, url, b" world", 5, headers={"Upload-Checksum": right})
    assert retry.status_code == 204


@pytest.mark.parametrize("value", ["sha3 " + b64(b"x" * 32), "whirlpool abc=", "SHA1 " + b64(b"x" * 20), "md4 YQ=="])
def test_checksum_unknown_algorithm_400(server: ServerProcess, client: httpx.Client, value: str) -> None:
    url = create(client, 11)
    assert patch(client, url, b"hello", 0).status_code == 204
    response = patch(client, url, b" world", 5, headers={"Upload-Checksum": value})
    assert response.status_code == 400
    assert offset_of(client, url) == 5
    assert data_file(server, url).read_bytes() == b"hello"


def test_checksum_mismatch_on_completing_chunk_leaves_upload_unfinished(client: httpx.Client) -> None:
    url = create(client, 5)
    response = patch(client, url, b"hello", 0, headers={"Upload-Checksum": "md5 " + _digest("md5", b"hellO")})
    assert response.status_code == 460
    assert offset_of(client, url) == 0
    assert 400 <= client.get(url).status_code < 500


CHECKSUM_FAILURES = [
    ("sha1 " + _digest("sha1", b"something else"), 460),
    ("sha256 " + _digest("sha1", b"0123456789"), 460),  # right data, another algorithm's digest
    ("nosuchalgo " + _digest("sha1", b"0123456789"), 400),
]


def _checksum_patch(url: str, checksum: str, body: bytes, offset: int) -> bytes:
    headers = [
        ("Tus-Resumable", "1.0.0"),
        ("Upload-Offset", str(offset)),
        ("Content-Type", OCTET),
        ("Upload-Checksum", checksum),
    ]
    return build_request("PATCH", url_path(url), headers, body)


def _staged(server: ServerProcess) -> int:
    """Bytes of a checksummed chunk the file store has received and holds back (its staging files)."""
    total = 0
    for part in (server.upload_dir / INTERNAL_DIRS[0]).glob("*"):
        with contextlib.suppress(FileNotFoundError):
            total += part.stat().st_size
    return total


def _wait_staged(server: ServerProcess, count: int, conn: Connection | None = None) -> None:
    """The server has received ``count`` bytes of the chunk (an event, where a sleep only hoped) -
    or, given ``conn``, has already answered on it (a chunk refused for its header is never staged)."""
    wait_until(
        lambda: _staged(server) == count or (conn is not None and conn.readable(0)),
        message=lambda: f"{count} bytes of the chunk staged (staged: {_staged(server)})", server=server,
    )  # fmt: skip


def test_checksum_failure_never_moves_offset_during_after_and_across_restart(server_factory: Factory) -> None:
    """In both failure cases (460, 400) the chunk MUST be discarded and the offset MUST NOT be
    updated: not while the body is still arriving (HEAD from another connection in between), not
    after the answer, and not after the server is killed (SIGKILL) and restarted on the same data.
    A chunk whose body was cut by that kill is discarded too."""
    srv = server_factory()
    body = b"0123456789"
    failed: list[str] = []
    with tus_client(srv) as c:
        for checksum, status in CHECKSUM_FAILURES:
            url = create(c, 20)
            assert patch(c, url, b"hello", 0).status_code == 204
            request = _checksum_patch(url, checksum, body, 5)
            with Connection(srv) as conn:
                conn.send(request[:-5])
                _wait_staged(srv, 5, conn)  # the first half reached the server (or it answered already)
                assert offset_of(c, url) == 5, checksum
                assert data_file(srv, url).stat().st_size == 5, checksum
                conn.send(request[-5:])
                response = conn.read_response(method="PATCH")
            assert response.status == status, checksum
            assert offset_of(c, url) == 5, checksum
            assert data_file(srv, url).read_bytes() == b"hello", checksum
            failed.append(url)

        # A good checksum, but the server dies while the body is half sent.
        cut = create(c, 20)
        assert patch(c, cut, b"hello", 0).status_code == 204
    request = _checksum_patch(cut, "sha1 " + _digest("sha1", body), body, 5)
    with Connection(srv) as conn:
        conn.send(request[:-5])
        _wait_staged(srv, 5)  # killed with half the body received
        srv.restart()

    with tus_client(srv) as c:
        for url in [*failed, cut]:
            assert offset_of(c, url) == 5
            assert data_file(srv, url).read_bytes() == b"hello"
            good = patch(c, url, body, 5, headers={"Upload-Checksum": "sha1 " + _digest("sha1", body)})
            assert good.status_code == 204
            assert good.headers["upload-offset"] == "15"


def test_checksum_chunk_cut_by_client_disconnect_is_discarded(server: ServerProcess, client: httpx.Client) -> None:
    url = create(client, 20)
    body = b"0123456789"
    request = build_request(
        "PATCH",
        url_path(url),
        [
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Offset", "0"),
            ("Content-Type", OCTET),
            ("Upload-Checksum", "sha1 " + _digest("sha1", body)),
        ],
        body,
    )
    with Connection(server) as conn:
        conn.send(request[:-5])
        _wait_staged(server, 5)  # the first half reached the server
    assert offset_of(client, url) == 0
    assert data_file(server, url).stat().st_size == 0
    # The later event: a PATCH of the whole chunk takes the upload's lock only after the cut request
    # let go, and is accepted at offset 0 only if nothing of the cut chunk landed.
    good = patch(client, url, body, 0, headers={"Upload-Checksum": "sha1 " + _digest("sha1", body)})
    assert good.status_code == 204, (good.status_code, good.text)
    assert good.headers["upload-offset"] == "10"
    assert data_file(server, url).read_bytes() == body


def _chunked(body: bytes, trailers: list[tuple[str, str]], pieces: int = 3) -> bytes:
    step = max(1, len(body) // pieces)
    return chunked([body[start : start + step] for start in range(0, len(body), step)], trailers)


def _trailer_patch(url: str, offset: int, body: bytes, checksum: str) -> tuple[bytes, bytes]:
    head = build_request(
        "PATCH",
        url_path(url),
        [
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Offset", str(offset)),
            ("Content-Type", OCTET),
            ("Transfer-Encoding", "chunked"),
            ("Trailer", "Upload-Checksum"),
        ],
        b"",
        content_length=False,
    )
    return head, _chunked(body, [("Upload-Checksum", checksum)])


@pytest.mark.parametrize(
    ("checksum", "status"),
    [
        ("sha1 " + _digest("sha1", b" world"), 204),
        ("crc32 " + _digest("crc32", b" world"), 204),
        ("sha1 " + _digest("sha1", b" WORLD"), 460),
        ("md5 " + _digest("sha1", b" world"), 460),
        ("nosuchalgo " + _digest("sha1", b" world"), 400),
    ],
)
def test_checksum_trailer(server: ServerProcess, client: httpx.Client, checksum: str, status: int) -> None:
    """checksum-trailer: Upload-Checksum sent as a trailer of a chunked body. Announced only if
    supported; mismatch 460, unknown algorithm 400, the chunk discarded (offset unchanged also
    while the body is still arriving)."""
    if "checksum-trailer" not in extensions(client):
        pytest.skip("checksum-trailer not announced")
    url = create(client, 11)
    assert patch(client, url, b"hello", 0).status_code == 204
    head, body = _trailer_patch(url, 5, b" world", checksum)
    with Connection(server) as conn:
        conn.send(head + body[:8])
        _wait_staged(server, 2)  # the first chunk (" w") reached the server
        assert offset_of(client, url) == 5
        conn.send(body[8:])
        response = conn.read_response(method="PATCH")
    assert response.status == status
    if status == 204:
        assert response.header("upload-offset") == "11"
        assert client.get(url).content == b"hello world"
    else:
        assert offset_of(client, url) == 5
        assert data_file(server, url).read_bytes() == b"hello"


def test_checksum_trailer_announced_but_missing(server: ServerProcess, client: httpx.Client) -> None:
    if "checksum-trailer" not in extensions(client):
        pytest.skip("checksum-trailer not announced")
    url = create(client, 11)
    head, _ = _trailer_patch(url, 0, b"hello", "")
    with Connection(server) as conn:
        conn.send(head + _chunked(b"hello", []))
        response = conn.read_response(method="PATCH")
    assert 400 <= response.status < 500
    assert offset_of(client, url) == 0


# == termination ===============================================================================


@pytest.mark.parametrize("content", [b"", b"hel", b"hello"])
def test_termination(server: ServerProcess, client: httpx.Client, content: bytes) -> None:
    """DELETE: 204; afterwards 404 or 410; resources freed (data and info files gone)."""
    assert "termination" in extensions(client)
    url = create(client, 5)
    if content:
        assert patch(client, url, content, 0).status_code == 204
    assert data_file(server, url).exists()
    assert info_file(server, url).exists()
    response = client.delete(url)
    assert response.status_code == 204
    assert response.content == b""
    assert client.head(url).status_code == 404
    assert patch(client, url, b"x", len(content)).status_code == 404
    assert client.get(url).status_code == 404
    assert client.delete(url).status_code == 404
    assert not data_file(server, url).exists()
    assert not info_file(server, url).exists()


def test_termination_unknown_upload_404(client: httpx.Client) -> None:
    assert client.delete("/files/doesnotexist").status_code == 404


def test_termination_disabled(server_factory: Factory) -> None:
    srv = server_factory(["--disable-termination"])
    with tus_client(srv) as c:
        assert "termination" not in extensions(c)
        url = upload(c, b"keep")
        response = c.delete(url)
        assert 400 <= response.status_code < 500
        assert c.head(url).status_code == 200
        assert data_file(srv, url).read_bytes() == b"keep"
        assert info_file(srv, url).exists()
        override = c.post(url, headers={"X-HTTP-Method-Override": "DELETE"})
        assert 400 <= override.status_code < 500
        assert c.head(url).status_code == 200


# == concatenation =============================================================================


def _partial(client: httpx.Client, data: bytes, *, fill: bool = True, metadata: str | None = None) -> str:
    headers = {"Upload-Concat": "partial"}
    if metadata:
        headers["Upload-Metadata"] = metadata
    url = create(client, len(data), headers=headers)
    if fill and data:
        assert patch(client, url, data, 0).status_code == 204
    return url


def _final(client: httpx.Client, urls: list[str], **headers: str) -> httpx.Response:
    return client.post("/files/", headers={"Upload-Concat": "final;" + " ".join(urls), **headers})


def test_concatenation_advertised(client: httpx.Client) -> None:
    names = extensions(client)
    assert "concatenation" in names
    assert "concatenation-unfinished" in names


def test_partial_head(client: httpx.Client) -> None:
    """HEAD of a partial MUST contain Upload-Offset and Upload-Concat as received."""
    url = _partial(client, b"hello", fill=False)
    probe = client.head(url)
    assert probe.headers["upload-offset"] == "0"
    assert probe.headers["upload-concat"] == "partial"
    assert probe.headers["upload-length"] == "5"


def test_concatenation_relative_urls(client: httpx.Client) -> None:
    """The spec example: final;/files/a /files/b -> 'hello world'."""
    a = _partial(client, b"hello")
    b = _partial(client, b" world")
    concat = "final;" + url_path(a) + " " + url_path(b)
    response = client.post("/files/", headers={"Upload-Concat": concat})
    assert response.status_code == 201
    final = str(client.base_url.join(response.headers["location"]))
    probe = client.head(final)
    assert probe.headers["upload-length"] == "11"
    assert probe.headers["upload-offset"] == "11"
    assert probe.headers["upload-concat"] == concat
    download = client.get(final)
    assert download.status_code == 200
    assert download.content == b"hello world"


def test_concatenation_absolute_urls(client: httpx.Client) -> None:
    parts = [bytes([i]) * (i + 1) for i in range(5)]
    urls = [_partial(client, p) for p in parts]
    response = _final(client, urls)
    assert response.status_code == 201
    final = str(client.base_url.join(response.headers["location"]))
    assert client.get(final).content == b"".join(parts)
    probe = client.head(final)
    assert probe.headers["upload-length"] == probe.headers["upload-offset"] == str(sum(map(len, parts)))
    # MUST include "the Upload-Concat header and its value as received in the upload creation request".
    assert probe.headers["upload-concat"] == "final;" + " ".join(urls)


def test_concatenation_mixed_urls_as_received(client: httpx.Client) -> None:
    """An absolute URL, a relative one, and one of the same origin in other letters and with its
    default port: HEAD returns them as sent (one space between), not rebuilt from the IDs."""
    a, b, c = (_partial(client, p) for p in (b"a", b"b", b"c"))
    host = urlsplit(a).netloc
    third = f"HTTP://{host.upper()}{url_path(c)}"
    received = f"final;{a}  {url_path(b)}\t{third}"
    response = client.post("/files/", headers={"Upload-Concat": received})
    assert response.status_code == 201
    final = str(client.base_url.join(response.headers["location"]))
    assert client.get(final).content == b"abc"
    assert client.head(final).headers["upload-concat"] == f"final;{a} {url_path(b)} {third}"


def test_concatenation_url_of_another_origin_is_400(client: httpx.Client) -> None:
    """A partial named by another server's URL (or outside the base path) is not looked up by its
    last path segment: 400, and nothing is created."""
    a = _partial(client, b"abc")
    parts = urlsplit(a)
    for url in (
        f"http://other.example{parts.path}",
        f"https://{parts.netloc}{parts.path}",
        f"//other.example{parts.path}",
        f"http://{parts.hostname}:1{parts.path}",
        f"/elsewhere/{upload_id(a)}",
        f"{parts.scheme}://{parts.netloc}/elsewhere/{upload_id(a)}",
    ):
        response = _final(client, [url])
        assert response.status_code == 400, url
        assert "location" not in response.headers


def test_concatenation_byte_exact_binary(client: httpx.Client) -> None:
    a_data = bytes(range(256)) * 40
    b_data = bytes(reversed(range(256))) * 33 + b"\x00\r\n"
    response = _final(client, [_partial(client, a_data), _partial(client, b_data)])
    assert response.status_code == 201
    final = str(client.base_url.join(response.headers["location"]))
    assert client.get(final).content == a_data + b_data


def test_concatenation_response_to_post(client: httpx.Client) -> None:
    response = _final(client, [_partial(client, b"x")])
    assert response.status_code == 201
    assert "location" in response.headers


def test_patch_on_final_is_403_and_modifies_nothing(server: ServerProcess, client: httpx.Client) -> None:
    """PATCH against a final upload MUST be 403 and MUST NOT modify the final or its partials."""
    a = _partial(client, b"hello")
    b = _partial(client, b" world")
    final = str(client.base_url.join(_final(client, [a, b]).headers["location"]))
    for offset in (0, 11):
        response = patch(client, final, b"!!", offset)
        assert response.status_code == 403
    assert client.get(final).content == b"hello world"
    assert data_file(server, final).read_bytes() == b"hello world"
    assert data_file(server, a).read_bytes() == b"hello"
    assert data_file(server, b).read_bytes() == b" world"
    assert client.head(final).headers["upload-offset"] == "11"


def test_patch_on_unfinished_final_is_403(server: ServerProcess, client: httpx.Client) -> None:
    a = _partial(client, b"hello", fill=False)
    final = str(client.base_url.join(_final(client, [a]).headers["location"]))
    response = patch(client, final, b"hello", 0)
    assert response.status_code == 403
    assert offset_of(client, a) == 0
    assert data_file(server, a).stat().st_size == 0


def test_final_with_upload_length_400(client: httpx.Client) -> None:
    """The Client MUST NOT include Upload-Length in the final upload creation."""
    a = _partial(client, b"hello")
    response = _final(client, [a], **{"Upload-Length": "5"})
    assert response.status_code == 400
    assert "location" not in response.headers


def test_same_partial_twice(client: httpx.Client) -> None:
    """The same partial MAY appear several times in one final, and in several finals."""
    a = _partial(client, b"ab")
    b = _partial(client, b"-")
    first = _final(client, [a, b, a])
    assert first.status_code == 201
    assert client.get(str(client.base_url.join(first.headers["location"]))).content == b"ab-ab"
    second = _final(client, [a, a])
    assert second.status_code == 201
    second_url = str(client.base_url.join(second.headers["location"]))
    assert client.get(second_url).content == b"abab"
    assert client.head(second_url).headers["upload-length"] == "4"


def test_final_metadata_is_its_own(client: httpx.Client) -> None:
    """Partial uploads' metadata SHALL NOT be transferred to the final upload."""
    a = _partial(client, b"x", metadata="filename " + b64("part.bin"))
    response = _final(client, [a], **{"Upload-Metadata": "filename " + b64("whole.bin")})
    final = str(client.base_url.join(response.headers["location"]))
    assert client.head(final).headers["upload-metadata"] == "filename " + b64("whole.bin")
    bare = _final(client, [a])
    assert "upload-metadata" not in client.head(str(client.base_url.join(bare.headers["location"]))).headers


def test_concatenation_unfinished(client: httpx.Client) -> None:
    """concatenation-unfinished: a final created before its partials finish completes when the last does."""
    a = _partial(client, b"hello", fill=False)
    b = _partial(client, b" world", fill=False)
    assert patch(client, a, b"hel", 0).status_code == 204
    response = _final(client, [a, b])
    assert response.status_code == 201
    final = str(client.base_url.join(response.headers["location"]))

    pending = client.head(final)
    assert pending.status_code == 200
    # SHOULD NOT carry Upload-Offset before concatenation finished; MUST carry the length if known.
    assert "upload-offset" not in pending.headers
    assert pending.headers["upload-length"] == "11"
    assert pending.headers["upload-concat"].startswith("final;")
    assert 400 <= client.get(final).status_code < 500

    assert patch(client, a, b"lo", 3).status_code == 204
    assert "upload-offset" not in client.head(final).headers
    assert patch(client, b, b" wor", 0).status_code == 204
    assert patch(client, b, b"ld", 4).status_code == 204

    done = client.head(final)
    assert done.headers["upload-offset"] == done.headers["upload-length"] == "11"
    download = client.get(final)
    assert download.status_code == 200
    assert download.content == b"hello world"


def test_final_content_survives_removal_of_partials(client: httpx.Client) -> None:
    """The Server MAY delete partials after concatenation; the final keeps its bytes either way."""
    a = _partial(client, b"hello")
    b = _partial(client, b" world")
    final = str(client.base_url.join(_final(client, [a, b]).headers["location"]))
    assert client.delete(a).status_code == 204  # pytusd keeps partials until they are deleted
    assert client.delete(b).status_code == 204
    assert client.get(final).content == b"hello world"
    assert client.head(final).headers["upload-offset"] == "11"


def test_terminating_a_partial_that_an_unfinished_final_waits_for(client: httpx.Client) -> None:
    """A final waiting for a partial that is then terminated can never complete: a server either
    refuses the termination or the final upload is gone too, never pending forever. pytusd
    terminates the partial and removes the final with it."""
    a = _partial(client, b"abc", fill=False)
    final = str(client.base_url.join(_final(client, [a]).headers["location"]))
    response = client.delete(a)
    assert response.status_code == 204
    assert client.head(a).status_code == 404
    assert client.head(final).status_code == 404, client.head(final).headers


def test_concatenation_unfinished_with_deferred_partial(client: httpx.Client) -> None:
    """Upload-Length of the final only once it can be calculated."""
    a = _partial(client, b"abc")
    b = create(client, None, headers={"Upload-Concat": "partial"})
    response = _final(client, [a, b])
    assert response.status_code == 201
    final = str(client.base_url.join(response.headers["location"]))
    pending = client.head(final)
    assert "upload-offset" not in pending.headers
    assert "upload-length" not in pending.headers
    assert patch(client, b, b"def", 0, headers={"Upload-Length": "3"}).status_code == 204
    done = client.head(final)
    assert done.headers["upload-offset"] == done.headers["upload-length"] == "6"
    assert client.get(final).content == b"abcdef"


def test_concatenation_unfinished_same_partial_twice(client: httpx.Client) -> None:
    a = _partial(client, b"xy", fill=False)
    final = str(client.base_url.join(_final(client, [a, a]).headers["location"]))
    assert patch(client, a, b"xy", 0).status_code == 204
    done = client.head(final)
    assert done.headers["upload-offset"] == done.headers["upload-length"] == "4"
    assert client.get(final).content == b"xyxy"


def test_concatenation_unfinished_survives_restart(server_factory: Factory) -> None:
    srv = server_factory()
    with tus_client(srv) as c:
        a = _partial(c, b"abc", fill=False)
        final = str(c.base_url.join(_final(c, [a]).headers["location"]))
    srv.restart()
    with tus_client(srv) as c:
        assert patch(c, a, b"abc", 0).status_code == 204
        assert wait_until(lambda: c.head(final).headers.get("upload-offset") == "3")
        assert c.get(final).content == b"abc"


@pytest.mark.parametrize("flags", [["--fsync"], ["--workers", "2"]], ids=["fsync", "2-workers"])
def test_declared_length_of_partial_survives_concurrent_final_creation(
    server_factory: Factory, flags: list[str]
) -> None:
    """Once set the length MUST NOT be changed: a PATCH that declares the length of a deferred
    partial upload (204) while a final upload naming that partial is being created must not have
    its Upload-Length undone by the final's bookkeeping."""
    srv = server_factory(flags)
    with tus_client(srv) as c, tus_client(srv) as other:
        for attempt in range(30):
            partial = create(c, None, headers={"Upload-Concat": "partial"})
            finals: list[httpx.Response] = []

            def create_final(p: str = partial, out: list[httpx.Response] = finals) -> None:
                out.append(other.post("/files/", headers={"Upload-Concat": "final;" + url_path(p)}))

            thread = threading.Thread(target=create_final)
            thread.start()
            declared = patch(c, partial, b"ab", 0, headers={"Upload-Length": "4"})
            thread.join()
            assert declared.status_code == 204
            assert finals[0].status_code == 201
            probe = c.head(partial)
            assert probe.headers.get("upload-length") == "4", (attempt, dict(probe.headers))
            assert "upload-defer-length" not in probe.headers
            # And the final completes once the partial does.
            assert patch(c, partial, b"cd", 2).status_code == 204
            final = url_path(finals[0].headers["location"])
            assert wait_until(lambda f=final: c.head(f).headers.get("upload-offset") == "4", timeout=5)


def test_concatenation_disabled(server_factory: Factory) -> None:
    srv = server_factory(["--disable-concatenation"])
    with tus_client(srv) as c:
        names = extensions(c)
        assert "concatenation" not in names
        assert "concatenation-unfinished" not in names
        response = c.post("/files/", headers={"Upload-Length": "3", "Upload-Concat": "partial"})
        if response.status_code == 201:
            # Ignored is acceptable; but then it is no partial upload.
            assert "upload-concat" not in c.head(response.headers["location"]).headers
        else:
            assert 400 <= response.status_code < 500
        normal = upload(c, b"abc")
        final = c.post("/files/", headers={"Upload-Concat": "final;" + url_path(normal)})
        assert 400 <= final.status_code < 500
