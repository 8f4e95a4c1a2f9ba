"""The framework examples (examples/*_app) run for real: uvicorn in its own process, clients over TCP.

:func:`run_example` starts one and stops it; :func:`check_mounted_example` holds the checks every
mounted example must pass (login, owner-only access, the mount prefix in Location, tuspy).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.server import answers, free_port, launch, read_tail, track, untrack

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"alice": "token-alice", "bob": "token-bob"}
OCTET = "application/offset+octet-stream"


@dataclass
class Example:
    name: str
    base_url: str
    prefix: str  # where pytusd is mounted, with the trailing slash: "/uploads/"
    upload_dir: Path
    log_path: Path

    @property
    def creation_url(self) -> str:
        return self.base_url + self.prefix

    def client(self, user: str | None, token: str | None = None) -> httpx.Client:
        headers = {"Tus-Resumable": "1.0.0"}
        if token is None and user is not None:
            token = TOKENS[user]
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def log(self) -> str:
        return read_tail(self.log_path)


@contextmanager
def run_example(
    app_dir: Path, root: Path, prefix: str, *, health: str = "/health", env: Mapping[str, str] | None = None
) -> Iterator[Example]:
    """``uvicorn app:app --app-dir app_dir`` with the test tokens and ``root/uploads``; ready once
    ``health`` answers 200. Raises ``ServerStartError`` if it does not come up."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PYTUSD_")}
    environ.update(
        EXAMPLE_TOKENS=",".join(f"{user}:{token}" for user, token in TOKENS.items()),
        UPLOAD_DIR=str(root / "uploads"),
        **(env or {}),
    )
    log_path = root / "server.log"
    base_url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(app_dir),
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    proc = launch(cmd, log_path=log_path, env=environ, ready=answers(base_url + health, "GET"),
                  what=f"the {app_dir.name} example", timeout=30)  # fmt: skip
    running = Example(f"{app_dir.name} :{port} ({log_path})", base_url, prefix, root / "uploads", log_path)
    track(running)
    try:
        yield running
    finally:
        untrack(running)
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def metadata(filename: str) -> str:
    return f"filename {base64.b64encode(filename.encode()).decode()}"


# -- the checks every mounted example passes ----------------------------------------------------


def check_creating_needs_a_valid_token(example: Example) -> None:
    for client in (example.client(None), example.client(None, token="forged")):
        with client:
            response = client.post(example.prefix, headers={"Upload-Length": "3"})
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"] == "Bearer"
    assert not any(p.is_file() for p in example.upload_dir.rglob("*") if ".pytusd" not in str(p))


def check_tuspy_refused_without_a_login(example: Example, tmp_path: Path) -> None:
    from tusclient import client as tus_client
    from tusclient.exceptions import TusCommunicationError

    source = tmp_path / "anonymous.bin"
    source.write_bytes(b"x" * 1000)
    for headers in ({}, {"Authorization": "Bearer forged"}):
        client = tus_client.TusClient(example.creation_url, headers=headers)
        try:
            client.uploader(str(source), chunk_size=256, metadata={"filename": "anonymous.bin"}).upload()
        except TusCommunicationError as exc:
            assert exc.status_code == 401
        else:
            raise AssertionError("tuspy uploaded without a login")


def check_tuspy_upload_is_byte_exact(example: Example, tmp_path: Path) -> None:
    from tusclient import client as tus_client

    source = tmp_path / "holiday photo.jpg"
    data = os.urandom(300 * 1024 + 17)
    source.write_bytes(data)
    client = tus_client.TusClient(example.creation_url, headers={"Authorization": f"Bearer {TOKENS['bob']}"})
    uploader = client.uploader(str(source), chunk_size=64 * 1024, metadata={"filename": "holiday photo.jpg"})
    uploader.upload()
    url = httpx.URL(uploader.url)
    assert url.path.startswith(example.prefix + "bob/") and url.path.endswith("-holiday_photo.jpg"), url
    with example.client("bob") as bob:
        head = bob.head(str(url))
        assert head.status_code == 200
        assert head.headers["upload-offset"] == head.headers["upload-length"] == str(len(data))
        download = bob.get(str(url))
        assert download.status_code == 200
        assert download.content == data
    stored = example.upload_dir / url.path[len(example.prefix) :]
    assert stored.read_bytes() == data


def check_only_the_owner_has_access(example: Example) -> None:
    data = b"%PDF-1.7 quarterly numbers"
    with example.client("alice") as alice, example.client("bob") as bob, example.client(None) as anonymous:
        created = alice.post(
            example.prefix, headers={"Upload-Length": str(len(data)), "Upload-Metadata": metadata("Q3 report.pdf")}
        )
        assert created.status_code == 201, created.text
        url = created.headers["location"]
        # The Location is absolute and carries the mount prefix, so clients can follow it as is.
        assert url.startswith(example.creation_url + "alice/"), url
        assert url.endswith("-Q3_report.pdf")

        patched = alice.patch(url, content=data[:10], headers={"Upload-Offset": "0", "Content-Type": OCTET})
        assert patched.status_code == 204

        # Everyone else is told it does not exist; without a token, to log in first.
        evil = {"Upload-Offset": "10", "Content-Type": OCTET}
        assert bob.head(url).status_code == 404
        assert bob.get(url).status_code == 404
        assert bob.patch(url, content=b"evil", headers=evil).status_code == 404
        assert bob.delete(url).status_code == 404
        assert anonymous.head(url).status_code == 401
        assert anonymous.get(url).status_code == 401
        assert anonymous.patch(url, content=b"evil", headers=evil).status_code == 401
        assert anonymous.delete(url).status_code == 401

        head = alice.head(url)
        assert head.status_code == 200 and head.headers["upload-offset"] == "10"
        done = alice.patch(url, content=data[10:], headers={"Upload-Offset": "10", "Content-Type": OCTET})
        assert done.status_code == 204
        assert bob.get(url).status_code == 404
        download = alice.get(url)
        assert download.status_code == 200 and download.content == data

        assert bob.delete(url).status_code == 404
        assert alice.delete(url).status_code == 204
        assert alice.head(url).status_code == 404
