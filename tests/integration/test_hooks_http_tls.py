"""--hooks-http-skip-verify: an https hook endpoint with a self-signed certificate (made with the
openssl command) fails verification without the flag and is used with it."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.integration.tus_helpers import tus_client, upload_files
from tests.support.server import ServerProcess

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture
def https_hooks(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """An https endpoint on loopback with a self-signed certificate; yields its URL and the hook
    types it received."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            document = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            received.append(str(document.get("Type")))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            return

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/hooks", received
    finally:
        server.shutdown()
        server.server_close()


def _args(url: str) -> list[str]:
    return ["--hooks-http", url, "--hooks-enabled-events", "pre-create", "--hooks-http-retry", "0"]


def test_self_signed_endpoint_fails_without_the_flag(
    server_factory: Callable[..., ServerProcess], https_hooks: tuple[str, list[str]]
) -> None:
    url, received = https_hooks
    srv = server_factory(_args(url))
    with tus_client(srv) as c:
        response = c.post("/files/", headers={"Upload-Length": "1"})
    assert 500 <= response.status_code < 600, response.text
    assert response.text.startswith("hook failed")
    assert received == []
    assert upload_files(srv) == set()
    # Logged as any connection failure (the TLS error is a ConnectError to httpx).
    assert "pre-create failed" in srv.log()


def test_self_signed_endpoint_works_with_the_flag(
    server_factory: Callable[..., ServerProcess], https_hooks: tuple[str, list[str]]
) -> None:
    url, received = https_hooks
    srv = server_factory([*_args(url), "--hooks-http-skip-verify"])
    with tus_client(srv) as c:
        response = c.post("/files/", headers={"Upload-Length": "1"})
    assert response.status_code == 201, response.text
    assert received == ["pre-create"]
