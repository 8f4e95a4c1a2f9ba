"""Every shape of path, on every store: a clear 4xx, never a 5xx, and no upload touched.

The request path is the one input that reaches a store's names (files, keys, lock files), so the
shapes that have broken servers are enumerated here: nested below an existing upload, new nested
IDs, percent-encoded separators and dots, over-long segments and IDs (file systems allow 255 bytes
per name), and the names a store keeps beside an upload. Over a real server on the session's store
(file or S3, see tests/conftest.py), and in-process on the memory and file stores.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from tests.integration.tus_helpers import OCTET, assert_plain_4xx, offset_of, upload, upload_id
from tests.support.inprocess import ListBody, Server
from tests.support.rawhttp import raw_request
from tests.support.server import ServerProcess

from pytusd.stores.base import DataStore
from pytusd.stores.file import FileStore
from pytusd.stores.memory import MemoryStore

PARTIAL = "application/partial-upload"

#: Paths below the base path; ``{id}`` is an existing upload's ID (raw, as sent on the wire).
SHAPES: list[str] = [
    "{id}/x",
    "{id}/x/y/z",
    "{id}/",
    "{id}%2F",
    "{id}%2Fx",
    "{id}/..",
    "{id}/%2e%2e",
    "{id}.info",
    "{id}.part",
    "{id}.lock",
    "{id}.stop",
    "{id}.tmp",
    "{id}.finals",
    "{id}%2Einfo",
    "{id}%00",
    "{id};x",
    "{id}%20",
    "{id}%25",
    "x/{id}",
    "new/nested/id",
    "new%2Fnested",
    "%2e%2e%2f{id}",
    ".pytusd-locks/{id}",
    ".pytusd-tmp/x",
    "x.pytusd",
    "a" * 200,
    "a" * 201,
    "a" * 251,
    "a" * 255,
    "a" * 256,
    "a" * 4000,
    "a/" * 127 + "b",
    "a/" * 128 + "b",
    "/".join(["b" * 200, "c" * 54]),
    "%ff%fe",
    "%c3%a4",
    "%",
    "%zz",
]

#: (method, headers, body) per request; the IETF ones with draft versions 3 and 6.
ATTEMPTS: list[tuple[str, list[tuple[str, str]], bytes]] = [
    ("HEAD", [("Tus-Resumable", "1.0.0")], b""),
    ("GET", [("Tus-Resumable", "1.0.0")], b""),
    ("PATCH", [("Tus-Resumable", "1.0.0"), ("Upload-Offset", "0"), ("Content-Type", OCTET)], b"abc"),
    ("DELETE", [("Tus-Resumable", "1.0.0")], b""),
    ("POST", [("Tus-Resumable", "1.0.0"), ("Upload-Length", "3")], b""),
    ("HEAD", [("Upload-Draft-Interop-Version", "6")], b""),
    ("DELETE", [("Upload-Draft-Interop-Version", "6")], b""),
    (
        "PATCH",
        [("Upload-Draft-Interop-Version", "6"), ("Upload-Offset", "0"), ("Upload-Complete", "?1"),
         ("Content-Type", PARTIAL)],
        b"abc",
    ),
    ("PATCH", [("Upload-Draft-Interop-Version", "3"), ("Upload-Offset", "0"), ("Upload-Incomplete", "?0")], b"abc"),
]  # fmt: skip


def _targets(existing: str) -> list[str]:
    return ["/files/" + shape.replace("{id}", existing) for shape in SHAPES]


def test_every_path_shape_on_the_session_store(server: ServerProcess, client: httpx.Client) -> None:
    url = upload(client, b"data")
    uid = upload_id(url)
    answers: list[tuple[str, str, int]] = []
    for target in _targets(uid):
        for method, headers, body in ATTEMPTS:
            response = raw_request(server, method, target, headers, body)
            answers.append((method, target[:60], response.status))
            if method != "HEAD":
                assert_plain_4xx(response.status, response.headers, response.body)
        concat = [("Tus-Resumable", "1.0.0"), ("Upload-Concat", f"final;{target}")]
        response = raw_request(server, "POST", "/files/", concat)
        assert_plain_4xx(response.status, response.headers, response.body)
    bad = [answer for answer in answers if not 400 <= answer[2] < 500]
    assert not bad, bad
    assert client.get(url).content == b"data"
    assert offset_of(client, url) == 4
    assert client.options("/files/").status_code in (200, 204)


def _decoded(target: str) -> str | None:
    """The path as an ASGI server hands it on (percent-decoded), or None if it is not text."""
    from urllib.parse import unquote

    try:
        return unquote(target, errors="strict")
    except UnicodeDecodeError:
        return None


@pytest.mark.parametrize("store_kind", ["memory", "file"])
def test_every_path_shape_in_process(store_kind: str, tmp_path: Path) -> None:
    """The same shapes straight into the dispatcher, for the stores no server pass runs on."""

    async def main() -> None:
        store: DataStore = MemoryStore() if store_kind == "memory" else FileStore(tmp_path)
        server = Server(store)
        path = await server.create(4)
        response = await server.patch(path, b"data", 0)
        assert response.status == 204
        uid = path.removeprefix("/files/")
        bad = []
        for target in _targets(uid):
            decoded = _decoded(target)
            if decoded is None:
                continue
            for method, headers, body in ATTEMPTS:
                names = {name.lower().replace("-", "_"): value for name, value in headers}
                tus = names.pop("tus_resumable", None) is not None
                answer = await server.call(method, decoded, ListBody(body), tus=tus, **names)
                if not 400 <= answer.status < 500:
                    bad.append((method, decoded[:60], answer.status, answer.body[:100]))
        assert not bad, bad
        head = await server.call("HEAD", path)
        assert (head.status, dict(head.headers).get("upload-offset")) == (200, "4")

    asyncio.run(main())
