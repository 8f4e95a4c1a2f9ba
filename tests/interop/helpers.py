"""Shared helpers of the interop tests: random files and byte-exact checks of stored uploads."""

from __future__ import annotations

import base64
import os
import random
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.support.server import ServerProcess

TUS = {"Tus-Resumable": "1.0.0"}
KIB = 1024
MIB = 1024 * 1024


def random_bytes(size: int, seed: int) -> bytes:
    """Reproducible random content (a failing test can be replayed with the same bytes)."""
    return random.Random(seed).randbytes(size)


def write_random_file(directory: Path, size: int, seed: int, name: str | None = None) -> tuple[Path, bytes]:
    data = random_bytes(size, seed)
    path = directory / (name or f"upload-{seed}-{size}.bin")
    path.write_bytes(data)
    return path, data


def upload_id(server: ServerProcess, url: str) -> str:
    """The upload ID of an absolute or relative upload URL of ``server``."""
    path = urlsplit(url).path
    prefix = urlsplit(server.url).path
    assert path.startswith(prefix), f"{url!r} is not under {server.url!r}"
    return path[len(prefix) :]


def head(server: ServerProcess, url: str) -> httpx.Response:
    return httpx.head(url, headers=TUS, timeout=10.0)


def decode_metadata(header: str | None) -> dict[str, str]:
    result: dict[str, str] = {}
    if not header:
        return result
    for pair in header.split(","):
        key, _, value = pair.strip().partition(" ")
        result[key] = base64.b64decode(value).decode() if value else ""
    return result


def assert_stored(server: ServerProcess, url: str, data: bytes) -> None:
    """The upload at ``url`` is complete and holds exactly ``data``: by HEAD, GET and on disk."""
    response = head(server, url)
    assert response.status_code == 200, response.text
    assert response.headers["upload-offset"] == str(len(data))
    assert response.headers.get("upload-length") == str(len(data))
    download = httpx.get(url, timeout=30.0)
    assert download.status_code == 200, download.text
    assert len(download.content) == len(data)
    assert download.content == data, "downloaded bytes differ from the uploaded file"
    if server.backend != "file":
        return  # on S3, HEAD and GET above are the whole check
    on_disk = server.upload_dir / upload_id(server, url)
    assert on_disk.is_file(), f"no data file {on_disk}"
    assert os.path.getsize(on_disk) == len(data)
    assert on_disk.read_bytes() == data, "bytes on disk differ from the uploaded file"
