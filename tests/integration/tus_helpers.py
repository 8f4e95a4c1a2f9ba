"""Helpers for the tus integration tests: uploads over httpx, raw sockets, disk snapshots.

httpx normalizes what these tests need to send verbatim (paths with ``..``, control characters,
odd Host headers, ``Expect: 100-continue`` timing), so :class:`RawConnection` speaks HTTP/1.1 by
hand over a plain socket.
"""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self
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
    assert response.status_code in (200, 204), response.status_code
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


# -- raw HTTP/1.1 -----------------------------------------------------------------------------


def join_headers(header_list: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; repeated fields joined with ", " (as a server would see them)."""
    joined: dict[str, str] = {}
    for name, value in header_list:
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


@dataclass
class RawResponse:
    status: int
    reason: str
    header_list: list[tuple[str, str]]
    body: bytes = b""
    #: 1xx responses received before this one.
    interim: list[RawResponse] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return join_headers(self.header_list)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def raw_head(self) -> bytes:
        lines = [f"{n}: {v}" for n, v in self.header_list]
        return "\r\n".join(lines).encode("latin-1")


HeaderItems = Sequence[tuple[str | bytes, str | bytes]]


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def build_request(
    method: str | bytes,
    target: str | bytes,
    headers: HeaderItems = (),
    body: bytes = b"",
    *,
    host: str | bytes | None = "localhost",
    content_length: bool = True,
) -> bytes:
    lines = [_bytes(method) + b" " + _bytes(target) + b" HTTP/1.1"]
    names = {_bytes(n).lower() for n, _ in headers}
    if host is not None and b"host" not in names:
        lines.append(b"Host: " + _bytes(host))
    for name, value in headers:
        lines.append(_bytes(name) + b": " + _bytes(value))
    if content_length and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class SocketReader:
    """A TCP connection to the server with a read buffer: read up to a marker, exactly n bytes, a body."""

    def __init__(self, server: ServerProcess, timeout: float = TIMEOUT, *, nodelay: bool = False) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buffer = b""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise ConnectionError(f"connection closed before {marker!r}; got {self.buffer[:300]!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise ConnectionError("connection closed inside a body")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _read_head(self) -> tuple[int, str, list[tuple[str, str]]]:
        """Status, reason and header fields of the next response."""
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        status_line, *lines = head.split("\r\n")
        version, status, *reason = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        header_list = []
        for line in lines:
            name, sep, value = line.partition(":")
            assert sep, f"malformed header line {line!r}"
            header_list.append((name.strip(), value.strip()))
        return int(status), reason[0] if reason else "", header_list

    def _read_body(self, headers: Mapping[str, str]) -> bytes:
        """The body after a head with these (lower-case) headers: chunked, sized, or up to EOF."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self._read_until(b"\r\n")
                    return body
                body += self._read_exact(size)
                self._read_exact(2)
        if "content-length" in headers:
            return self._read_exact(int(headers["content-length"]))
        body, self.buffer = self.buffer, b""
        while chunk := self.sock.recv(65536):  # no length given: the body ends with the connection
            body += chunk
        return body


class RawConnection(SocketReader):
    """One TCP connection; send bytes as they are and read responses by hand."""

    def send(self, data: bytes) -> bool:
        """Send; False if the server already closed the connection."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def read_head(self) -> RawResponse:
        """Status line and headers of the next response (interim or final), no body."""
        return RawResponse(*self._read_head())

    def read_response(self, *, method: str = "GET", skip_interim: bool = True) -> RawResponse:
        interim: list[RawResponse] = []
        while True:
            response = self.read_head()
            if 100 <= response.status < 200 and response.status != 101:
                interim.append(response)
                if skip_interim:
                    continue
                return response
            break
        response.interim = interim
        if method.upper() == "HEAD" or response.status in (204, 304):
            return response
        response.body = self._read_body(response.headers)
        return response

    def request(
        self,
        method: str,
        target: str | bytes,
        headers: HeaderItems = (),
        body: bytes = b"",
        *,
        host: str | bytes | None = "localhost",
        content_length: bool = True,
    ) -> RawResponse:
        self.send(build_request(method, target, headers, body, host=host, content_length=content_length))
        return self.read_response(method=method)


def raw_request(
    server: ServerProcess,
    method: str,
    target: str | bytes,
    headers: HeaderItems = (),
    body: bytes = b"",
    *,
    host: str | bytes | None = "localhost",
    content_length: bool = True,
) -> RawResponse:
    """One request on a fresh connection, sent byte for byte as given; the final response."""
    with RawConnection(server) as conn:
        return conn.request(method, target, headers, body, host=host, content_length=content_length)


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
