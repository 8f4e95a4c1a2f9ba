"""Helpers for the tus integration tests: uploads over httpx, response checks, disk snapshots.

Requests that httpx would normalize go over the raw client of tests/support/rawhttp.py.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from tests.support.server import ServerProcess

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = "application/offset+octet-stream"
#: Names the server keeps inside the upload directory for itself (staging and lock files).
INTERNAL_DIRS = (".pytusd-tmp", ".pytusd-locks")
#: Generous bound for anything that must not hang.
TIMEOUT = 10.0


def b64(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode("ascii")


# -- uploads over httpx -----------------------------------------------------------------------


def create(
    client: httpx.Client,
    length: int | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    path: str = "/files/",
) -> str:
    """POST a new upload; returns its absolute URL. ``length=None`` defers the length."""
    hdrs = dict(headers or {})
    if length is None:
        hdrs.setdefault("Upload-Defer-Length", "1")
    else:
        hdrs.setdefault("Upload-Length", str(length))
    if content is not None:
        hdrs.setdefault("Content-Type", OCTET)
    response = client.post(path, headers=hdrs, content=content)
    assert response.status_code == 201, (response.status_code, response.text)
    return absolute(client, response.headers["location"])


def absolute(client: httpx.Client, location: str) -> str:
    return str(client.base_url.join(location))


def patch(
    client: httpx.Client,
    url: str,
    data: bytes,
    offset: int,
    *,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    hdrs = {"Upload-Offset": str(offset), "Content-Type": OCTET, **(headers or {})}
    return client.patch(url, content=data, headers=hdrs)


def offset_of(client: httpx.Client, url: str) -> int:
    response = client.head(url)
    assert response.status_code == 200, response.status_code
    return int(response.headers["upload-offset"])


def upload(client: httpx.Client, data: bytes, *, headers: Mapping[str, str] | None = None) -> str:
    """Create and fill an upload in one go; returns its URL."""
    url = create(client, len(data), headers=headers)
    if data:
        response = patch(client, url, data, 0)
        assert response.status_code == 204, (response.status_code, response.text)
    return url


def upload_id(url: str) -> str:
    path = urlsplit(url).path
    assert path.startswith("/files/"), path
    return path[len("/files/") :]


def url_path(url: str) -> str:
    return urlsplit(url).path


def data_file(server: ServerProcess, url: str) -> Path:
    return server.upload_dir / upload_id(url)


def info_file(server: ServerProcess, url: str) -> Path:
    return server.upload_dir / (upload_id(url) + ".info")


def extensions(client: httpx.Client) -> list[str]:
    response = client.options("/files/")
    return split_list(response.headers.get("tus-extension", ""))


def split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


# -- response checks --------------------------------------------------------------------------


def assert_plain_4xx(status: int, headers: Mapping[str, str], body: bytes, *, forbidden: Iterable[bytes] = ()) -> None:
    """A client error with a one-line plain-text reason that repeats nothing hostile."""
    assert 400 <= status < 500, (status, body[:300])
    content_type = headers.get("content-type", "")
    assert content_type.startswith("text/plain"), (status, content_type, body[:300])
    text = body.decode("utf-8", "replace").strip()
    assert text, f"empty reason for {status}"
    assert "\n" not in text and "\r" not in text, text
    for needle in forbidden:
        if needle:
            assert needle not in body, (needle, body)


def assert_rejected(response: httpx.Response, *, forbidden: Iterable[bytes] = ()) -> None:
    assert_plain_4xx(response.status_code, response.headers, response.content, forbidden=forbidden)


# -- disk -------------------------------------------------------------------------------------


def tree(root: Path) -> set[str]:
    """Every path below ``root`` (files and directories), relative, as strings."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            found.add(os.path.normpath(os.path.join(rel, name)))
    return found


def upload_files(server: ServerProcess) -> set[str]:
    """Files of uploads in the upload directory (the server's own bookkeeping dirs left out)."""
    return {p for p in tree(server.upload_dir) if p.split(os.sep, 1)[0] not in INTERNAL_DIRS}


def outside_files(server: ServerProcess) -> set[str]:
    """Everything in the upload directory's parent except the upload directory itself."""
    parent = server.upload_dir.parent
    name = server.upload_dir.name
    return {p for p in tree(parent) if p.split(os.sep, 1)[0] != name}


# -- servers shared by a module -----------------------------------------------------------------


@contextmanager
def running_server(tmp_path_factory: pytest.TempPathFactory, args: Sequence[str] = ()) -> Iterator[ServerProcess]:
    """A server with flags, for a module-scoped fixture (the ``server`` fixture takes no flags)."""
    proc = ServerProcess(tmp_path_factory.mktemp("srv") / "data", args).start()
    try:
        yield proc
    finally:
        proc.kill()


def tus_client(server: ServerProcess) -> httpx.Client:
    """A client that sends Tus-Resumable (verify=False: no CA bundle to load for plain HTTP, which
    costs ~90 ms per client)."""
    return bare_client(server, headers=TUS)


def bare_client(server: ServerProcess | None = None, *, headers: Mapping[str, str] | None = None) -> httpx.Client:
    """A client without Tus-Resumable, for requests that must lack it."""
    base_url = server.base_url if server is not None else ""
    return httpx.Client(base_url=base_url, headers=headers, timeout=30.0, verify=False)
