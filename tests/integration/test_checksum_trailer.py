"""tus checksum-trailer: ``Upload-Checksum`` sent as a trailer of a chunked PATCH body.

tus 1.0.0, Checksum: "If the hash cannot be calculated at the beginning of the upload, it MAY be
included as a trailer. If the Server can handle trailers, this behavior MUST be announced by
adding ``checksum-trailer`` to the ``Tus-Extension`` header." A mismatch is 460 and the chunk is
discarded, exactly as with the header. Raw sockets: HTTP clients rarely send request trailers.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from base64 import b64encode

import pytest
from tests.integration.ietf_helpers import OCTET, Exchange, exchange, path_of, read_exchange
from tests.support.rawhttp import Connection
from tests.support.server import ServerProcess

TUS = ("Tus-Resumable", "1.0.0")
ALGORITHMS = ["sha1", "md5", "sha256", "crc32", "sha512"]


def checksum(algorithm: str, data: bytes) -> str:
    raw = zlib.crc32(data).to_bytes(4, "big") if algorithm == "crc32" else hashlib.new(algorithm, data).digest()
    return f"{algorithm} {b64encode(raw).decode('ascii')}"


def payload(n: int, seed: int = 0) -> bytes:
    return bytes((i * 13 + seed * 5 + i // 97) % 256 for i in range(n))


def create(server: ServerProcess, length: int) -> str:
    result = exchange(server, "POST", "/files/", [TUS, ("Upload-Length", str(length))])
    assert result.status == 201, result
    return path_of(result.final.get("location") or "")


def offset(server: ServerProcess, path: str) -> int:
    result = exchange(server, "HEAD", path, [TUS], content_length=False)
    assert result.status == 200, result
    return int(result.final.get("upload-offset") or "-1")


def stored(server: ServerProcess, path: str) -> bytes:
    return (server.upload_dir / path.rsplit("/", 1)[1]).read_bytes()


def patch_with_trailer(
    server: ServerProcess,
    path: str,
    at: int,
    pieces: list[bytes],
    trailers: list[tuple[str, str]],
    *,
    announce: str | None = "Upload-Checksum",
) -> Exchange:
    headers = [TUS, ("Upload-Offset", str(at)), ("Content-Type", OCTET), ("Transfer-Encoding", "chunked")]
    if announce is not None:
        headers.append(("Trailer", announce))
    with Connection(server) as conn:
        conn.send_head("PATCH", path, headers)
        # The body in several writes, so the trailer surely comes after data the server has read.
        conn.send_chunked(pieces, trailers)
        return read_exchange(conn, "PATCH")


def test_options_advertises_checksum_trailer(server: ServerProcess) -> None:
    result = exchange(server, "OPTIONS", "/files/", [TUS])
    assert result.status == 200, result
    extensions = [e.strip() for e in (result.final.get("tus-extension") or "").split(",")]
    assert "checksum-trailer" in extensions, result
    assert "checksum" in extensions


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_good_trailer_is_accepted(server: ServerProcess, algorithm: str) -> None:
    data = payload(30_000, 1)
    path = create(server, len(data))
    pieces = [data[:10_000], data[10_000:20_000], data[20_000:]]
    result = patch_with_trailer(server, path, 0, pieces, [("Upload-Checksum", checksum(algorithm, data))])
    assert result.status == 204, result
    assert result.final.get("upload-offset") == str(len(data))
    assert offset(server, path) == len(data)
    assert stored(server, path) == data


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_bad_trailer_is_460_and_chunk_discarded(server: ServerProcess, algorithm: str) -> None:
    data = payload(30_000, 2)
    path = create(server, len(data))
    pieces = [data[:15_000], data[15_000:]]
    wrong = checksum(algorithm, data[:-1] + bytes([data[-1] ^ 1]))
    result = patch_with_trailer(server, path, 0, pieces, [("Upload-Checksum", wrong)])
    assert result.status == 460, result
    assert offset(server, path) == 0
    assert stored(server, path) == b""


@pytest.mark.parametrize("algorithm", ["sha1", "crc32"])
def test_bad_trailer_keeps_earlier_chunks(server: ServerProcess, algorithm: str) -> None:
    data = payload(9000, 3)
    path = create(server, len(data))
    first = patch_with_trailer(server, path, 0, [data[:4000]], [("Upload-Checksum", checksum(algorithm, data[:4000]))])
    assert first.status == 204, first

    bad = patch_with_trailer(server, path, 4000, [data[4000:]], [("Upload-Checksum", checksum(algorithm, b"no"))])
    assert bad.status == 460, bad
    assert offset(server, path) == 4000

    trailer = ("Upload-Checksum", checksum(algorithm, data[4000:]))
    good = patch_with_trailer(server, path, 4000, [data[4000:]], [trailer])
    assert good.status == 204, good
    assert stored(server, path) == data


def test_trailer_announced_among_others(server: ServerProcess) -> None:
    data = payload(500, 4)
    path = create(server, len(data))
    trailers = [("X-Other", "1"), ("Upload-Checksum", checksum("sha256", data))]
    result = patch_with_trailer(server, path, 0, [data], trailers, announce="X-Other, upload-checksum")
    assert result.status == 204, result
    assert offset(server, path) == len(data)


def test_announced_trailer_missing_is_rejected(server: ServerProcess) -> None:
    data = payload(500, 5)
    path = create(server, len(data))
    result = patch_with_trailer(server, path, 0, [data], [])
    assert 400 <= result.status < 500 and result.status != 409, result
    assert offset(server, path) == 0


def test_unknown_algorithm_in_trailer_is_rejected(server: ServerProcess) -> None:
    data = payload(500, 6)
    path = create(server, len(data))
    result = patch_with_trailer(server, path, 0, [data], [("Upload-Checksum", "sha3 " + "A" * 44)])
    assert 400 <= result.status < 500, result
    assert offset(server, path) == 0


def test_trailer_does_not_pose_as_header(server: ServerProcess) -> None:
    """A trailer is not a header: an ``Upload-Offset`` trailer cannot move the write."""
    data = payload(300, 7)
    path = create(server, len(data) + 100)
    trailers = [("Upload-Checksum", checksum("md5", data)), ("Upload-Offset", "100")]
    result = patch_with_trailer(server, path, 0, [data], trailers, announce="Upload-Checksum, Upload-Offset")
    assert result.status == 204, result
    assert offset(server, path) == len(data)
    assert stored(server, path)[: len(data)] == data


def test_files_stay_inside_upload_dir(server: ServerProcess) -> None:
    """Discarded chunks leave no staging files behind."""
    data = payload(2000, 8)
    path = create(server, len(data))
    patch_with_trailer(server, path, 0, [data], [("Upload-Checksum", checksum("sha1", b"x"))])
    staging = server.upload_dir / ".pytusd-tmp"
    assert not staging.exists() or os.listdir(staging) == []
