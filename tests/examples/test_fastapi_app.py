"""examples/fastapi_app run for real: uvicorn in its own process, tus clients over TCP."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.support.server import ServerStartError, answers, free_port, launch, read_tail, track, untrack
from tests.support.wait import wait_until

pytest.importorskip("fastapi")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fastapi_app"
TOKENS = {"alice": "token-alice", "bob": "token-bob"}
OCTET = "application/offset+octet-stream"


@dataclass
class Example:
    base_url: str
    upload_dir: Path
    finished_dir: Path
    log_path: Path

    def client(self, user: str | None) -> httpx.Client:
        headers = {"Tus-Resumable": "1.0.0"}
        if user is not None:
            headers["Authorization"] = f"Bearer {TOKENS[user]}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def log(self) -> str:
        return read_tail(self.log_path)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    root = tmp_path_factory.mktemp("example")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTUSD_")}
    env.update(
        EXAMPLE_TOKENS=",".join(f"{user}:{token}" for user, token in TOKENS.items()),
        UPLOAD_DIR=str(root / "uploads"),
        FINISHED_DIR=str(root / "finished"),
    )
    log_path = root / "server.log"
    cmd = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(EXAMPLE), "--port", str(port)]
    base_url = f"http://127.0.0.1:{port}"
    try:
        proc = launch(
            [*cmd, "--host", "127.0.0.1"], log_path=log_path, env=env, ready=answers(base_url + "/health", "GET"),
            what="the example", timeout=30,
        )  # fmt: skip
    except ServerStartError as exc:
        pytest.fail(str(exc))
    running = Example(base_url, root / "uploads", root / "finished", log_path)
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


def wait_for(path: Path, timeout: float = 10) -> bool:
    return wait_until(path.exists, timeout=timeout, message=f"{path} to exist")


def test_creating_needs_a_valid_token(example: Example) -> None:
    for client in (example.client(None), httpx.Client(base_url=example.base_url, headers={
        "Tus-Resumable": "1.0.0", "Authorization": "Bearer forged"})):  # fmt: skip
        with client:
            response = client.post("/files/", headers={"Upload-Length": "3"})
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
    assert not any(p.is_file() for p in example.upload_dir.rglob("*") if ".pytusd" not in str(p))


def test_upload_is_named_owned_and_moved_when_finished(example: Example) -> None:
    data = b"%PDF-1.7 quarterly numbers"
    with example.client("alice") as alice, example.client("bob") as bob, example.client(None) as anonymous:
        created = alice.post(
            "/files/", headers={"Upload-Length": str(len(data)), "Upload-Metadata": metadata("Q3 report.pdf")}
        )
        assert created.status_code == 201
        url = created.headers["location"]
        path = httpx.URL(url).path
        assert path.startswith("/files/alice/") and path.endswith("-Q3_report.pdf")

        # Only alice may touch it; everyone else is told it does not exist.
        assert (
            alice.patch(url, content=data[:10], headers={"Upload-Offset": "0", "Content-Type": OCTET}).status_code
            == 204
        )
        assert bob.head(url).status_code == 404
        assert (
            bob.patch(url, content=b"evil", headers={"Upload-Offset": "10", "Content-Type": OCTET}).status_code == 404
        )
        assert bob.delete(url).status_code == 404
        assert anonymous.head(url).status_code == 401
        head = alice.head(url)
        assert head.status_code == 200 and head.headers["upload-offset"] == "10"

        done = alice.patch(url, content=data[10:], headers={"Upload-Offset": "10", "Content-Type": OCTET})
        assert done.status_code == 204

        finished = example.finished_dir / "alice" / "Q3_report.pdf"
        assert wait_for(finished)
        assert finished.read_bytes() == data
        assert not (example.upload_dir / path[len("/files/") :]).exists()  # moved, not copied
        assert alice.head(url).status_code == 404  # no longer a tus upload

        assert alice.get("/me/files").json() == ["Q3_report.pdf"]
        assert alice.get("/me/files/Q3_report.pdf").content == data
        assert bob.get("/me/files").json() == []
        assert bob.get("/me/files/Q3_report.pdf").status_code == 404
        assert anonymous.get("/me/files").status_code == 401


def test_owner_can_abort_and_nobody_else(example: Example) -> None:
    with example.client("bob") as bob, example.client("alice") as alice:
        url = bob.post("/files/", headers={"Upload-Length": "100", "Upload-Metadata": metadata("big.bin")}).headers[
            "location"
        ]
        assert alice.delete(url).status_code == 404
        assert bob.delete(url).status_code == 204
        assert bob.head(url).status_code == 404


def test_a_real_tus_client(example: Example, tmp_path: Path) -> None:
    from tusclient import client as tus_client

    source = tmp_path / "holiday.jpg"
    data = os.urandom(300 * 1024)
    source.write_bytes(data)
    client = tus_client.TusClient(example.base_url + "/files/", headers={"Authorization": f"Bearer {TOKENS['bob']}"})
    uploader = client.uploader(str(source), chunk_size=64 * 1024, metadata={"filename": "holiday.jpg"})
    uploader.upload()
    assert "/files/bob/" in uploader.url
    finished = example.finished_dir / "bob" / "holiday.jpg"
    assert wait_for(finished)
    assert finished.read_bytes() == data


def test_metrics_of_the_mounted_app(example: Example) -> None:
    def scrape() -> dict[str, float]:
        response = httpx.get(example.base_url + "/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return {
            name: float(value)
            for name, value in (line.rsplit(" ", 1) for line in response.text.splitlines() if not line.startswith("#"))
        }

    before = scrape()
    with example.client(None) as anonymous:
        assert anonymous.post("/files/", headers={"Upload-Length": "3"}).status_code == 401
    after = scrape()
    post = 'tusd_requests_total{method="POST"}'
    rejected = 'tusd_errors_total{code="ERR_UPLOAD_REJECTED",status="401"}'
    assert after[post] == before[post] + 1
    assert after[rejected] == before.get(rejected, 0) + 1
    assert after['tusd_hook_invocations_total{hooktype="pre-create"}'] >= 1
    # The scrapes are FastAPI's routes: pytusd never saw them.
    assert after['tusd_requests_total{method="GET"}'] == before['tusd_requests_total{method="GET"}']
