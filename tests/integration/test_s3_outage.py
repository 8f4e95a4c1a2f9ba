"""S3 goes away during an upload and comes back (issue 14): a real pytusd on the suite's real Swift,
whose proxy server (the S3 endpoint) is killed between two PATCHes and in the middle of one.

Every request meanwhile is answered 503 with ``Retry-After`` (none 500, none hangs), the offset
the server reported before the outage is still backed once S3 is back, the upload resumes with
HEAD and PATCH and its object is byte-exact, and no spool file of the failed requests stays.
The shared Swift serves again after the test, whatever happened in it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from tests.integration.s3_helpers import (
    MiB,
    s3_flags,
    s3_server_factory_fixture,  # noqa: F401 - fixture
    swift_fixture,  # noqa: F401 - fixture
    unique_prefix,
)
from tests.services.swift import SwiftS3Server
from tests.support.rawhttp import Connection
from tests.support.wait import wait_until

pytestmark = pytest.mark.services
STORES = ("s3",)

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = "application/offset+octet-stream"
#: botocore retries a refused connection (3 attempts, with backoff) before the store gives up.
OUTAGE_ANSWER = 60.0


@pytest.fixture
def outage(swift: SwiftS3Server) -> Iterator[SwiftS3Server]:
    """The shared Swift, whose proxy the test may stop; started again (and S3 working) after it."""
    yield swift
    swift.start_proxy()


def test_s3_outage_between_and_during_patches_is_503_and_the_upload_resumes(
    outage: SwiftS3Server, s3_server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool_root = tmp_path / "spool"
    spool_root.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool_root))  # the server's spool directory goes there
    server = s3_server_factory(s3_flags(outage, unique_prefix()))
    data = os.urandom(8 * MiB)

    def spool_files() -> list[str]:
        return [f.name for f in spool_root.rglob("*") if f.is_file()]

    with httpx.Client(base_url=server.base_url, headers=TUS, timeout=OUTAGE_ANSWER) as c:

        def offset() -> int:
            response = c.head(url)
            assert response.status_code == 200, response.text
            return int(response.headers["upload-offset"])

        def assert_unavailable(response: httpx.Response) -> None:
            assert response.status_code == 503, (response.status_code, response.text)
            assert response.headers.get("retry-after", "").isdigit()
            if response.request.method != "HEAD":
                assert response.text == "storage is unavailable, retry shortly\n"

        created = c.post("/files/", headers={"Upload-Length": str(len(data))})
        assert created.status_code == 201, created.text
        url = httpx.URL(created.headers["location"]).path
        first = c.patch(url, content=data[: 6 * MiB], headers={"Upload-Offset": "0", "Content-Type": OCTET})
        assert first.status_code == 204 and int(first.headers["upload-offset"]) == 6 * MiB

        # -- between two PATCHes: S3 is down, every request is 503, then it is back.
        outage.stop_proxy()
        assert_unavailable(c.head(url))
        assert_unavailable(c.patch(url, content=b"x", headers={"Upload-Offset": str(6 * MiB), "Content-Type": OCTET}))
        assert_unavailable(c.post("/files/", headers={"Upload-Length": "1"}))
        outage.start_proxy()
        assert offset() == 6 * MiB

        # -- during a PATCH: a body of unknown length whose first bytes are committed (and reported)
        # while it still arrives; then S3 goes away, and the body ends.
        with Connection(SimpleNamespace(host="127.0.0.1", port=server.port), timeout=OUTAGE_ANSWER) as raw:
            headers = [("Tus-Resumable", "1.0.0"), ("Upload-Offset", str(6 * MiB)), ("Content-Type", OCTET),
                       ("Transfer-Encoding", "chunked")]  # fmt: skip
            raw.send_head("PATCH", url, headers)
            early = data[6 * MiB : 6 * MiB + 300 * 1024]
            raw.send_body(f"{len(early):x}\r\n".encode() + early + b"\r\n")
            acknowledged = 6 * MiB + len(early)
            wait_until(lambda: offset() == acknowledged, message="the first bytes committed, as the body pauses")
            outage.stop_proxy()
            late = data[6 * MiB + len(early) : 7 * MiB]
            raw.send_body(f"{len(late):x}\r\n".encode() + late + b"\r\n0\r\n\r\n")
            reply = raw.read_reply(OUTAGE_ANSWER, method="PATCH")
        assert reply is not None, "the server closed the connection without an answer"
        assert reply.status == 503 and (reply.header("retry-after") or "").isdigit(), reply
        assert reply.body == b"storage is unavailable, retry shortly\n"
        assert_unavailable(c.head(url))

        # -- S3 is back: the acknowledged offset is backed, the upload resumes and is byte-exact.
        outage.start_proxy()
        resumed = offset()
        assert acknowledged <= resumed <= 7 * MiB
        rest = c.patch(url, content=data[resumed:], headers={"Upload-Offset": str(resumed), "Content-Type": OCTET})
        assert rest.status_code == 204 and int(rest.headers["upload-offset"]) == len(data), rest.text
        download = c.get(url)
        assert download.status_code == 200 and download.content == data
        assert spool_files() == []  # nothing of the failed PATCH stays on disk
    assert "Traceback" not in server.log()
