"""examples/django_app run for real: Django + pytusd under uvicorn in its own process, over TCP.

Access is Django's session login: the tus hooks read the session cookie and resolve the user with
Django's session store, so a tus client needs nothing but the cookie a login gave it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.support.server import ServerStartError, answers, free_port, launch, read_tail, track, untrack

pytest.importorskip("django")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "django_app"
PASSWORDS = {"alice": "pw-alice", "bob": "pw-bob"}
OCTET = "application/offset+octet-stream"
TUS = {"Tus-Resumable": "1.0.0"}


@dataclass
class Example:
    base_url: str
    upload_dir: Path
    log_path: Path

    def log(self) -> str:
        return read_tail(self.log_path)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=TUS, timeout=30)

    @contextmanager
    def login(self, user: str) -> Iterator[httpx.Client]:
        """A client holding the session cookie of ``user`` (Django's login view, CSRF and all)."""
        with self.client() as client:
            assert client.get("/login/").status_code == 200  # sets the CSRF cookie
            response = client.post(
                "/login/",
                data={"username": user, "password": PASSWORDS[user]},
                headers={"X-CSRFToken": client.cookies["csrftoken"]},
            )
            assert response.status_code == 200, response.text
            assert response.json() == {"username": user}
            yield client


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    root = tmp_path_factory.mktemp("django_example")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTUSD_", "DJANGO_"))}
    env.update(
        EXAMPLE_DATA_DIR=str(root / "data"),
        EXAMPLE_USERS=",".join(f"{user}:{password}" for user, password in PASSWORDS.items()),
        DJANGO_SECRET_KEY="test-only-" + "x" * 50,
    )
    log_path = root / "server.log"
    cmd = [sys.executable, "-m", "uvicorn", "uploadsite.asgi:application", "--app-dir", str(EXAMPLE)]
    base_url = f"http://127.0.0.1:{port}"
    try:
        proc = launch(
            [*cmd, "--host", "127.0.0.1", "--port", str(port)], log_path=log_path, env=env,
            ready=answers(base_url + "/health/", "GET"), what="the Django example", timeout=60,
        )  # fmt: skip
    except ServerStartError as exc:
        pytest.fail(str(exc))
    running = Example(base_url, root / "data" / "uploads", log_path)
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


def stored_files(example: Example) -> list[Path]:
    return [p for p in example.upload_dir.rglob("*") if p.is_file() and ".pytusd" not in str(p)]


def test_login_is_django_s(example: Example) -> None:
    with example.client() as anonymous:
        assert anonymous.get("/me/").status_code == 403
    with example.login("alice") as alice:
        assert alice.get("/me/").json() == {"username": "alice"}
    with example.client() as client:
        client.get("/login/")
        wrong = client.post(
            "/login/",
            data={"username": "alice", "password": "nope"},
            headers={"X-CSRFToken": client.cookies["csrftoken"]},
        )
        assert wrong.status_code == 403
        assert "sessionid" not in client.cookies
        # Django's CSRF protection is on: a login without the token is refused.
        assert client.post("/login/", data={"username": "alice", "password": PASSWORDS["alice"]}).status_code == 403


def test_uploading_needs_a_login(example: Example) -> None:
    before = stored_files(example)
    with example.client() as anonymous:
        assert anonymous.post("/uploads/", headers={"Upload-Length": "3"}).status_code == 403
    # A forged or stale session cookie is no login either.
    forged = httpx.Client(base_url=example.base_url, headers={**TUS, "Cookie": "sessionid=forged"}, timeout=30)
    with forged:
        assert forged.post("/uploads/", headers={"Upload-Length": "3"}).status_code == 403
    with example.login("alice") as alice:
        cookie = f"sessionid={alice.cookies['sessionid']}"
        assert alice.post("/logout/", headers={"X-CSRFToken": alice.cookies["csrftoken"]}).status_code == 204
    logged_out = httpx.Client(base_url=example.base_url, headers={**TUS, "Cookie": cookie}, timeout=30)
    with logged_out:
        assert logged_out.post("/uploads/", headers={"Upload-Length": "3"}).status_code == 403
    assert stored_files(example) == before


def test_only_the_owner_reaches_an_upload(example: Example) -> None:
    data = b"the quarterly numbers"
    with example.login("alice") as alice, example.login("bob") as bob, example.client() as anonymous:
        created = alice.post("/uploads/", headers={"Upload-Length": str(len(data))})
        assert created.status_code == 201
        url = created.headers["location"]
        assert httpx.URL(url).path.startswith("/uploads/")
        patch = {"Upload-Offset": "0", "Content-Type": OCTET}
        assert alice.patch(url, content=data[:5], headers=patch).status_code == 204

        # bob is logged in, but it is not his upload: nobody else learns it exists.
        assert bob.head(url).status_code == 404
        assert bob.get(url).status_code == 404
        assert bob.patch(url, content=b"evil", headers={**patch, "Upload-Offset": "5"}).status_code == 404
        assert bob.delete(url).status_code == 404
        assert anonymous.head(url).status_code == 403
        assert anonymous.delete(url).status_code == 403

        head = alice.head(url)
        assert head.status_code == 200 and head.headers["upload-offset"] == "5"
        assert alice.patch(url, content=data[5:], headers={**patch, "Upload-Offset": "5"}).status_code == 204
        assert alice.get(url).content == data
        assert alice.delete(url).status_code == 204
        assert alice.head(url).status_code == 404


def test_the_owner_is_the_server_s_word(example: Example) -> None:
    """A client cannot claim someone else's upload by sending ``owner`` metadata."""
    with example.login("bob") as bob, example.login("alice") as alice:
        me = "owner MQ=="  # base64 "1": alice's primary key, the first user created
        url = bob.post("/uploads/", headers={"Upload-Length": "3", "Upload-Metadata": me}).headers["location"]
        assert alice.head(url).status_code == 404
        assert bob.head(url).status_code == 200


def test_a_real_tus_client_with_the_session_cookie(example: Example, tmp_path: Path) -> None:
    from tusclient import client as tus_client

    source = tmp_path / "holiday.jpg"
    data = os.urandom(300 * 1024)
    source.write_bytes(data)
    with example.login("alice") as alice, example.login("bob") as bob:
        # The Cookie header as a browser sends it, byte for byte: other cookies of the site around the
        # session, one of them odd enough to stop Python's http.cookies (Django's parser reads on).
        cookie = f"theme=[dark]; csrftoken={alice.cookies['csrftoken']}; sessionid={alice.cookies['sessionid']}; b=c d"
        client = tus_client.TusClient(example.base_url + "/uploads/", headers={"Cookie": cookie})
        uploader = client.uploader(str(source), chunk_size=64 * 1024, metadata={"filename": "holiday.jpg"})
        uploader.upload()
        assert uploader.url is not None and httpx.URL(uploader.url).path.startswith("/uploads/")
        assert alice.get(uploader.url).content == data
        assert bob.get(uploader.url).status_code == 404

        anonymous = tus_client.TusClient(example.base_url + "/uploads/")
        refused = anonymous.uploader(str(source), chunk_size=64 * 1024)
        with pytest.raises(Exception, match="403"):
            refused.upload()


def test_asgi_py_dispatches_by_path(example: Example) -> None:
    with example.client() as client:
        tus = client.options("/uploads/")
        assert tus.status_code == 200 and tus.headers["tus-version"]
        for path in ("/uploadsx/", "/me/uploads/", "/login/uploads/"):
            django = client.options(path)
            assert "tus-version" not in django.headers, path
        assert client.get("/uploadsx/").status_code == 404
