"""GET downloads (not in the tus text; tusd's rules from spec/README.md) over a real pytusd process."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from tests.integration.tus_helpers import (
    b64,
    bare_client,
    create,
    patch,
    running_server,
    tus_client,
    upload,
)
from tests.support.server import ServerProcess
from tests.support.wait import wait_until

INLINE = [
    "text/plain",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/bmp",
    "image/webp",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/webm",
    "audio/ogg",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "application/ogg",
]
ATTACHMENT = [
    "text/html",
    "image/svg+xml",
    "application/pdf",
    "application/javascript",
    "text/javascript",
    "application/xhtml+xml",
    "text/xml",
    "application/octet-stream",
    "application/x-shockwave-flash",
    "multipart/x-mixed-replace",
]


_PARAM = re.compile(r"""\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s"]*)\s*""")
_PARAMS = re.compile(r"""(;\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s"]*)\s*)*""")


def _meta(**values: str | bytes) -> dict[str, str]:
    return {"Upload-Metadata": ",".join(f"{k} {b64(v)}" if v else k for k, v in values.items())}


def _disposition_type(response: httpx.Response) -> str:
    return response.headers["content-disposition"].split(";", 1)[0].strip().lower()


def _essence(response: httpx.Response) -> str:
    return str(response.headers.get("content-type", "")).split(";", 1)[0].strip().lower()


def test_download_complete_upload(client: httpx.Client) -> None:
    data = bytes(range(256)) * 100
    url = upload(client, data)
    response = client.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["x-content-type-options"] == "nosniff"


def test_download_does_not_need_tus_resumable(server: ServerProcess, client: httpx.Client) -> None:
    url = upload(client, b"plain")
    with bare_client() as bare:
        assert bare.get(url).content == b"plain"


@pytest.mark.parametrize("filetype", INLINE)
def test_inline_allow_list(client: httpx.Client, filetype: str) -> None:
    url = upload(client, b"data", headers=_meta(filetype=filetype))
    response = client.get(url)
    assert _essence(response) == filetype
    assert _disposition_type(response) == "inline"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("filetype", ATTACHMENT)
def test_attachment_for_everything_else(client: httpx.Client, filetype: str) -> None:
    url = upload(client, b"<script>alert(1)</script>", headers=_meta(filetype=filetype))
    response = client.get(url)
    assert _essence(response) == filetype
    assert _disposition_type(response) == "attachment"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_media_type_parameters_kept(client: httpx.Client) -> None:
    url = upload(client, b"data", headers=_meta(filetype="text/plain; charset=utf-8"))
    response = client.get(url)
    assert _essence(response) == "text/plain"
    assert "charset=utf-8" in response.headers["content-type"].replace(" ", "").lower()
    assert _disposition_type(response) == "inline"


@pytest.mark.parametrize(
    "filetype",
    [
        "not a media type",
        "text/",
        "/plain",
        "text/plain/extra",
        "<script>",
        "text/html\r\nX-Injected: yes",
        "text/plain\r\n\r\n<html>",
        "text/plain; charset",
        "téxt/plain",
        "text/plain\x00",
        "",
    ],
)
def test_unparsable_filetype_is_not_used(client: httpx.Client, filetype: str) -> None:
    """Content-Type comes from filetype only when it parses as a media type."""
    url = upload(client, b"data", headers=_meta(filetype=filetype.encode("utf-8")))
    response = client.get(url)
    assert response.status_code == 200
    assert response.content == b"data"
    content_type = response.headers.get("content-type")
    if filetype:
        assert content_type != filetype
    assert content_type == "application/octet-stream"
    assert _disposition_type(response) == "attachment"
    assert "x-injected" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


def test_no_metadata_download(client: httpx.Client) -> None:
    url = upload(client, b"data")
    response = client.get(url)
    assert response.headers.get("content-type") == "application/octet-stream"
    assert _disposition_type(response) == "attachment"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_ascii_filename(client: httpx.Client) -> None:
    url = upload(client, b"data", headers=_meta(filename="report.pdf", filetype="application/pdf"))
    disposition = client.get(url).headers["content-disposition"]
    assert disposition.startswith("attachment")
    assert 'filename="report.pdf"' in disposition


@pytest.mark.parametrize("name", ["résumé ✓.txt", "日本語.png", "naïve\u202etxt.exe"])
def test_non_ascii_filename_uses_rfc6266_filename_star(client: httpx.Client, name: str) -> None:
    url = upload(client, b"data", headers=_meta(filename=name, filetype="text/plain"))
    raw = client.get(url).headers.raw
    disposition = next(v for k, v in raw if k.lower() == b"content-disposition")
    assert disposition.isascii()
    text = disposition.decode("ascii")
    star = [p.strip() for p in text.split(";") if p.strip().lower().startswith("filename*=")]
    assert len(star) == 1, text
    value = star[0].split("=", 1)[1]
    assert value.lower().startswith("utf-8''")
    decoded = unquote(value[len("utf-8''") :], encoding="utf-8", errors="strict")
    assert decoded == "".join(ch for ch in name if ch.isprintable())


@pytest.mark.parametrize(
    "name",
    [
        'a"b.txt',
        "a\\b.txt",
        "evil\r\nX-Injected: yes.txt",
        "x\"; filename*=UTF-8''evil.html",
        "../../etc/passwd",
        "a;b,c.txt",
    ],
)
def test_hostile_filename_never_breaks_the_header(client: httpx.Client, name: str) -> None:
    """A filename from metadata cannot inject headers or extra disposition parameters."""
    url = upload(client, b"data", headers=_meta(filename=name))
    response = client.get(url)
    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    assert "x-injected" not in response.headers
    kind, sep, rest = disposition.partition(";")
    rest = sep + rest
    assert kind.strip() == "attachment"
    match = _PARAMS.fullmatch(rest)
    assert match is not None, disposition
    names = [m.group(1).lower() for m in _PARAM.finditer(rest)]
    assert len(names) == len(set(names)), disposition
    assert set(names) <= {"filename", "filename*"}, disposition
    for m in _PARAM.finditer(rest):
        if m.group(1).lower() == "filename*":
            assert unquote(m.group(2).split("''", 1)[1]) != "evil.html"


# -- Range --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hello_url(server: ServerProcess) -> Iterator[str]:
    with tus_client(server) as c:
        yield upload(c, b"hello world", headers=_meta(filetype="text/plain"))


@pytest.mark.parametrize(
    ("range_value", "expected", "content_range"),
    [
        ("bytes=0-4", b"hello", "bytes 0-4/11"),
        ("bytes=6-", b"world", "bytes 6-10/11"),
        ("bytes=-5", b"world", "bytes 6-10/11"),
        ("bytes=-100", b"hello world", "bytes 0-10/11"),
        ("bytes=3-3", b"l", "bytes 3-3/11"),
        ("bytes=0-100", b"hello world", "bytes 0-10/11"),
        ("bytes=10-10", b"d", "bytes 10-10/11"),
    ],
)
def test_range_206(client: httpx.Client, hello_url: str, range_value: str, expected: bytes, content_range: str) -> None:
    response = client.get(hello_url, headers={"Range": range_value})
    assert response.status_code == 206
    assert response.content == expected
    assert response.headers["content-range"] == content_range
    assert response.headers["content-length"] == str(len(expected))
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("range_value", ["bytes=11-", "bytes=100-200", "bytes=-0"])
def test_range_416(client: httpx.Client, hello_url: str, range_value: str) -> None:
    response = client.get(hello_url, headers={"Range": range_value})
    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */11"
    assert b"hello" not in response.content


@pytest.mark.parametrize(
    "range_value", ["bytes=5-2", "items=0-1", "bytes=abc", "bytes=", "bytes=-", "bytes=99999999999999999999999-"]
)
def test_invalid_range_is_ignored(client: httpx.Client, hello_url: str, range_value: str) -> None:
    """RFC 9110: a Range that does not parse is ignored: the whole representation, 200."""
    response = client.get(hello_url, headers={"Range": range_value})
    assert response.status_code == 200
    assert response.content == b"hello world"


@pytest.mark.parametrize(
    ("range_value", "start", "end"),
    [
        ("bytes=1048570-1048580", 1048570, 1048581),
        ("bytes=0-", 0, 3 * 1024 * 1024 + 7),
        ("bytes=2097150-", 2097150, 3 * 1024 * 1024 + 7),
        ("bytes=-1048577", 3 * 1024 * 1024 + 7 - 1048577, 3 * 1024 * 1024 + 7),
    ],
)
def test_range_across_read_blocks(client: httpx.Client, range_value: str, start: int, end: int) -> None:
    data = bytes(i % 251 for i in range(3 * 1024 * 1024 + 7))
    url = _big_upload(client, data)
    response = client.get(url, headers={"Range": range_value})
    assert response.status_code == 206
    assert response.content == data[start:end]
    assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{len(data)}"


_BIG: dict[int, str] = {}


def _big_upload(client: httpx.Client, data: bytes) -> str:
    key = len(data)
    if key not in _BIG:
        _BIG[key] = upload(client, data)
    return _BIG[key]


def test_multiple_ranges(client: httpx.Client, hello_url: str) -> None:
    """Multiple ranges may be ignored (RFC 9110 14.2); pytusd does: the whole upload, 200."""
    response = client.get(hello_url, headers={"Range": "bytes=0-1,4-5"})
    assert response.status_code == 200
    assert response.content == b"hello world"
    assert "content-range" not in response.headers


def test_range_on_empty_upload(client: httpx.Client) -> None:
    url = create(client, 0)
    response = client.get(url, headers={"Range": "bytes=0-"})
    assert response.status_code == 416  # no byte 0 to start at
    assert response.headers["content-range"] == "bytes */0"
    full = client.get(url)
    assert full.status_code == 200
    assert full.content == b""


# -- what cannot be downloaded ------------------------------------------------------------------


def test_unfinished_upload_not_downloadable(client: httpx.Client) -> None:
    url = create(client, 11)
    assert patch(client, url, b"secret", 0).status_code == 204
    response = client.get(url)
    assert 400 <= response.status_code < 500
    assert b"secret" not in response.content
    ranged = client.get(url, headers={"Range": "bytes=0-3"})
    assert 400 <= ranged.status_code < 500
    assert b"secr" not in ranged.content


def test_deferred_upload_not_downloadable(client: httpx.Client) -> None:
    url = create(client, None)
    assert patch(client, url, b"secret", 0).status_code == 204
    response = client.get(url)
    assert 400 <= response.status_code < 500
    assert b"secret" not in response.content


def test_unknown_upload_404(client: httpx.Client) -> None:
    assert client.get("/files/doesnotexist").status_code == 404


def test_get_on_creation_url_is_not_a_listing(client: httpx.Client) -> None:
    upload(client, b"data")
    response = client.get("/files/")
    assert 400 <= response.status_code < 500


@pytest.fixture(scope="module")
def no_download(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory, ["--disable-download"]) as srv:
        yield srv


def test_disable_download(no_download: ServerProcess) -> None:
    with tus_client(no_download) as c:
        url = upload(c, b"private", headers=_meta(filetype="text/plain"))
        response = c.get(url)
        assert 400 <= response.status_code < 500
        assert b"private" not in response.content
        # Uploading still works.
        assert c.head(url).headers["upload-offset"] == "7"


def _chars_read(server: ServerProcess) -> int:
    """Bytes the server process has read so far, from files and sockets alike (its ``rchar``):
    what it fetched from any store."""
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/PID/io")


def _settled(server: ServerProcess, quiet: float = 0.5) -> int:
    """The server's ``rchar`` once it has not grown for ``quiet`` seconds."""
    last = [_chars_read(server), 0.0]

    def still() -> int | None:
        now, clock = _chars_read(server), time.monotonic()
        if now != last[0] or not last[1]:
            last[:] = [now, clock]
            return None
        return now if clock - last[1] >= quiet else None

    return wait_until(still, interval=0.1, message="the server to stop reading", server=server)


def test_abandoned_download_stops_reading(server: ServerProcess, client: httpx.Client) -> None:
    """A client that goes away early (a video player seeking elsewhere) costs the store no more
    reads: the server stops reading the upload, instead of reading it to the end for nobody."""
    size = 64 * 1024 * 1024
    data = os.urandom(size)
    url = upload(client, data)
    before = _settled(server)
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(f"GET {urlsplit(url).path} HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            piece = sock.recv(4096)
            assert piece, head
            head += piece
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
    read = _settled(server) - before
    # Room for what the socket buffers took before the client left, and a store's read-ahead (a
    # 4 MiB GET on Azure, whose SDK would otherwise fetch 32 MiB before sending a byte).
    assert read < size // 4, f"the server read {read} bytes of a {size}-byte upload after the client left"
    # The server is none the worse: the same upload downloads whole.
    response = client.get(url)
    assert response.status_code == 200 and response.content == data
