"""Smoke tests: the real services start and support what the tus stores need.

The S3 test walks through everything an S3-backed tus store does (multipart
upload, UploadPartCopy, ranged GET, ListParts, abort) against Swift's s3api.
The nginx tests check the load balancer of the cluster tests: round robin,
and request bodies streamed through unbuffered.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from .nginx import NginxProxy
from .redis_server import RedisServer
from .swift import SwiftS3Server

pytestmark = pytest.mark.services

MIB = 1024 * 1024
PART = 5 * MIB  # S3 (and s3api's min_segment_size) minimum for non-last parts


def _require(binary: str) -> None:
    if shutil.which(binary, path="/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin") is None:
        pytest.skip(f"{binary} not installed (run scripts/install-system-deps.sh)")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    _require("redis-server")
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def swift() -> Iterator[SwiftS3Server]:
    _require("swift-proxy-server")
    _require("memcached")
    with SwiftS3Server() as server:
        yield server


@pytest.fixture
def s3(swift: SwiftS3Server) -> Iterator[Any]:
    client = swift.client()
    yield client
    client.close()


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def test_redis_roundtrip(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.set("pytusd:smoke", b"value", ex=60)
        assert client.get("pytusd:smoke") == b"value"
        assert client.delete("pytusd:smoke") == 1
    finally:
        client.close()


def test_redis_restart_on_same_port(redis_server: RedisServer) -> None:
    """A crashed Redis comes back where its clients look for it, empty."""
    port = redis_server.port
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    try:
        client.set("pytusd:smoke", b"value")
        redis_server.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        assert redis_server.restart().port == port
        assert client.get("pytusd:smoke") is None
        assert client.set("pytusd:smoke", b"again")
    finally:
        client.close()


def test_s3_object_roundtrip(swift: SwiftS3Server, s3: Any) -> None:
    assert swift.endpoint_url == f"http://127.0.0.1:{swift.port}"
    swift.create_bucket("smoke-objects")
    swift.create_bucket("smoke-objects")  # idempotent

    key = "dir/hello.txt"
    put = s3.put_object(Bucket="smoke-objects", Key=key, Body=b"hello world", ContentType="text/plain")
    assert put["ETag"] == _etag(b"hello world")

    head = s3.head_object(Bucket="smoke-objects", Key="dir/hello.txt")
    assert head["ContentLength"] == 11
    assert head["ContentType"] == "text/plain"

    got = s3.get_object(Bucket="smoke-objects", Key="dir/hello.txt", Range="bytes=6-")
    assert got["Body"].read() == b"world"
    assert got["ContentRange"] == "bytes 6-10/11"

    listing = s3.list_objects_v2(Bucket="smoke-objects", Prefix="dir/")
    assert [obj["Key"] for obj in listing["Contents"]] == ["dir/hello.txt"]

    s3.delete_object(Bucket="smoke-objects", Key="dir/hello.txt")
    with pytest.raises(s3.exceptions.ClientError) as excinfo:
        s3.head_object(Bucket="smoke-objects", Key="dir/hello.txt")
    assert excinfo.value.response["Error"]["Code"] == "404"
    s3.delete_bucket(Bucket="smoke-objects")


def test_s3_multipart_upload(swift: SwiftS3Server, s3: Any) -> None:
    bucket = "smoke-multipart"
    swift.create_bucket(bucket)
    part1 = b"a" * PART
    source = bytes(range(256)) * (6 * MIB // 256)  # 6 MiB, copied from in part 2
    part2 = source[MIB : MIB + PART]
    part3 = b"c" * (100 * 1024)  # the last part may be small
    s3.put_object(Bucket=bucket, Key="source", Body=source)

    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="big", ContentType="application/octet-stream")["UploadId"]
    etag1 = s3.upload_part(Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=1, Body=part1)["ETag"]
    copied = s3.upload_part_copy(
        Bucket=bucket,
        Key="big",
        UploadId=upload_id,
        PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "source"},
        CopySourceRange=f"bytes={MIB}-{MIB + PART - 1}",
    )
    etag2 = copied["CopyPartResult"]["ETag"]
    etag3 = s3.upload_part(Bucket=bucket, Key="big", UploadId=upload_id, PartNumber=3, Body=part3)["ETag"]
    assert (etag1, etag2, etag3) == (_etag(part1), _etag(part2), _etag(part3))

    parts = s3.list_parts(Bucket=bucket, Key="big", UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [
        (1, PART, etag1),
        (2, PART, etag2),
        (3, len(part3), etag3),
    ]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("big", upload_id)]

    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="big",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]},
    )
    md5s = b"".join(hashlib.md5(p).digest() for p in (part1, part2, part3))
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'

    whole = part1 + part2 + part3
    head = s3.head_object(Bucket=bucket, Key="big")
    assert head["ContentLength"] == len(whole)
    assert head["ETag"] == done["ETag"]

    # A range that straddles the part 1 / part 2 boundary.
    got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={PART - 10}-{PART + 9}")
    assert got["Body"].read() == whole[PART - 10 : PART + 10]
    assert got["ContentRange"] == f"bytes {PART - 10}-{PART + 9}/{len(whole)}"
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == whole

    # Segments live in a hidden "<bucket>+segments" container: not listed.
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["big", "source"]
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)

    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "big"}, {"Key": "source"}]})
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    s3.delete_bucket(Bucket=bucket)


def test_s3_abort_multipart_upload(swift: SwiftS3Server, s3: Any) -> None:
    bucket = "smoke-abort"
    swift.create_bucket(bucket)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="aborted")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="aborted", UploadId=upload_id, PartNumber=1, Body=b"x" * 1024)

    s3.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=upload_id)

    with pytest.raises(s3.exceptions.NoSuchUpload):
        s3.list_parts(Bucket=bucket, Key="aborted", UploadId=upload_id)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    s3.delete_bucket(Bucket=bucket)


def test_s3_upload_part_copy_whole_object(swift: SwiftS3Server, s3: Any) -> None:
    """Swift 2.30 quirk: copying a whole object (no CopySourceRange) as a part
    stores the segment with an empty ETag in the listing, so ListParts shows
    '""'; completing with the ETag from the UploadPartCopy response works.
    Passing an explicit range (bytes=0-<size-1>) avoids the quirk."""
    bucket = "smoke-copy"
    swift.create_bucket(bucket)
    source = b"s" * PART
    s3.put_object(Bucket=bucket, Key="source", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="copy")["UploadId"]
    whole = s3.upload_part_copy(
        Bucket=bucket, Key="copy", UploadId=upload_id, PartNumber=1, CopySource={"Bucket": bucket, "Key": "source"}
    )["CopyPartResult"]["ETag"]
    ranged = s3.upload_part_copy(
        Bucket=bucket,
        Key="copy",
        UploadId=upload_id,
        PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "source"},
        CopySourceRange=f"bytes=0-{PART - 1}",
    )["CopyPartResult"]["ETag"]
    assert whole == ranged == _etag(source)

    listed = [p["ETag"] for p in s3.list_parts(Bucket=bucket, Key="copy", UploadId=upload_id)["Parts"]]
    assert listed[0] in ('""', whole)  # '""' on Swift 2.30
    assert listed[1] == ranged

    parts = [{"PartNumber": 1, "ETag": whole}, {"PartNumber": 2, "ETag": ranged}]
    s3.complete_multipart_upload(Bucket=bucket, Key="copy", UploadId=upload_id, MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == source + source
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "copy"}, {"Key": "source"}]})
    s3.delete_bucket(Bucket=bucket)


# -- nginx ----------------------------------------------------------------------------------------


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request with its server's name and what it received (JSON)."""

    protocol_version = "HTTP/1.1"  # keep-alive, as nginx's upstream connections expect
    server: _NamedServer

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._answer(body)

    def _read_chunked(self) -> bytes:
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0], 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()  # CRLF after the chunk
        trailer = self.rfile.readline()
        while trailer not in (b"\r\n", b""):  # trailers: skipped
            trailer = self.rfile.readline()
        return b"".join(chunks)

    def _answer(self, body: bytes) -> None:
        names = ("Host", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-For", "Transfer-Encoding")
        reply = {
            "name": self.server.name,
            "headers": {name: self.headers.get(name) for name in names},
            "content_length": self.headers.get("Content-Length"),
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


class _NamedServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.name = name


@pytest.fixture
def echo_upstreams() -> Iterator[list[_NamedServer]]:
    """Two tiny HTTP servers on free ports, each answering with its own name."""
    servers = [_NamedServer("a"), _NamedServer("b")]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()
    for thread in threads:
        thread.join(5)


@pytest.fixture
def nginx(echo_upstreams: list[_NamedServer]) -> Iterator[NginxProxy]:
    _require("nginx")
    with NginxProxy([("127.0.0.1", s.server_address[1]) for s in echo_upstreams]) as proxy:
        yield proxy


def test_nginx_round_robin(nginx: NginxProxy) -> None:
    assert nginx.url == f"http://127.0.0.1:{nginx.port}"
    with httpx.Client(timeout=10) as client:
        replies = [client.get(f"{nginx.url}/files/{i}").json() for i in range(6)]
    names = [reply["name"] for reply in replies]
    assert names in (["a", "b"] * 3, ["b", "a"] * 3)
    host = f"127.0.0.1:{nginx.port}"
    assert replies[0]["headers"] == {
        "Host": host,
        "X-Forwarded-Host": host,
        "X-Forwarded-Proto": "http",
        "X-Forwarded-For": "127.0.0.1",
        "Transfer-Encoding": None,
    }
    assert "upstream=127.0.0.1:" in nginx.access_log_path.read_text()


def test_nginx_streams_chunked_body(nginx: NginxProxy) -> None:
    """With request buffering on, nginx would read the whole body first and
    send it with a Content-Length; unbuffered, the chunks pass through as such."""
    body = bytes(range(256)) * (3 * MIB // 256)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    with httpx.Client(timeout=30) as client:
        reply = client.post(f"{nginx.url}/files/", content=chunks()).json()
    assert reply["headers"]["Transfer-Encoding"] == "chunked"
    assert reply["content_length"] is None
    assert (reply["length"], reply["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
