"""tus 1.0.0 expiration extension over a real pytusd process started with short expiry times."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest
from tests.integration.tus_helpers import (
    create,
    data_file,
    extensions,
    info_file,
    patch,
    running_server,
    tus_client,
    upload,
    url_path,
)
from tests.support.server import ServerProcess
from tests.support.wait import wait_until

#: RFC 9110 IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)


def _expires(value: str) -> datetime:
    assert IMF_FIXDATE.fullmatch(value), value
    return parsedate_to_datetime(value)


@pytest.fixture(scope="module")
def expiring_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Unfinished uploads expire 1 s after their last write; the sweeper runs every 0.2 s."""
    with running_server(tmp_path_factory, ["--expire-after", "1s", "--expire-interval", "0.2s"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Expiry an hour away, for header checks that must not race the sweeper."""
    with running_server(tmp_path_factory, ["--expire-after", "1h", "--expire-interval", "1h"]) as srv:
        yield srv


@pytest.fixture
def expiring(expiring_server: ServerProcess) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    with tus_client(expiring_server) as c:
        yield expiring_server, c


@pytest.fixture
def slow_expiring(slow_server: ServerProcess) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    with tus_client(slow_server) as c:
        yield slow_server, c


def test_expiration_advertised(slow_expiring: tuple[ServerProcess, httpx.Client]) -> None:
    _, c = slow_expiring
    assert "expiration" in extensions(c)


def test_upload_expires_on_post_and_patch(slow_expiring: tuple[ServerProcess, httpx.Client]) -> None:
    """Upload-Expires MUST be in the POST response when known, and in every PATCH response
    while the upload is going to expire; RFC 9110 date format."""
    _, c = slow_expiring
    now = datetime.now(UTC)
    created = c.post("/files/", headers={"Upload-Length": "10"})
    assert created.status_code == 201
    expires = _expires(created.headers["upload-expires"])
    assert now + timedelta(minutes=55) < expires < now + timedelta(minutes=65)
    url = str(c.base_url.join(created.headers["location"]))

    first = patch(c, url, b"hello", 0)
    assert first.status_code == 204
    after_patch = _expires(first.headers["upload-expires"])
    assert after_patch >= expires - timedelta(seconds=1)

    second = patch(c, url, b"wor", 5)
    assert second.status_code == 204
    _expires(second.headers["upload-expires"])


def test_upload_expires_on_head(slow_expiring: tuple[ServerProcess, httpx.Client]) -> None:
    """HEAD of an unfinished upload carries Upload-Expires too: when it expires if nothing more
    arrives (its last write plus the window, as the store records it); none once complete."""
    _, c = slow_expiring
    created = c.post("/files/", headers={"Upload-Length": "8"})
    url = str(c.base_url.join(created.headers["location"]))
    probe = c.head(url)
    assert probe.status_code == 200
    # The POST answers with now + the window, HEAD with the stored write time + the window.
    at_head = _expires(probe.headers["upload-expires"])
    assert abs(at_head - _expires(created.headers["upload-expires"])) <= timedelta(seconds=2)
    written = patch(c, url, b"abcd", 0)
    after = _expires(c.head(url).headers["upload-expires"])
    assert abs(after - _expires(written.headers["upload-expires"])) <= timedelta(seconds=2)
    assert after >= at_head
    deferred = c.post("/files/", headers={"Upload-Defer-Length": "1"})
    _expires(c.head(str(c.base_url.join(deferred.headers["location"]))).headers["upload-expires"])
    assert patch(c, url, b"efgh", 4).status_code == 204
    done = c.head(url)
    assert done.headers["upload-offset"] == "8" and "upload-expires" not in done.headers


def test_upload_expires_on_creation_with_upload(slow_expiring: tuple[ServerProcess, httpx.Client]) -> None:
    _, c = slow_expiring
    response = c.post(
        "/files/", content=b"abc", headers={"Upload-Length": "10", "Content-Type": "application/offset+octet-stream"}
    )
    assert response.status_code == 201
    _expires(response.headers["upload-expires"])


def test_upload_expires_on_deferred_upload(slow_expiring: tuple[ServerProcess, httpx.Client]) -> None:
    _, c = slow_expiring
    created = c.post("/files/", headers={"Upload-Defer-Length": "1"})
    _expires(created.headers["upload-expires"])
    url = str(c.base_url.join(created.headers["location"]))
    _expires(patch(c, url, b"abc", 0).headers["upload-expires"])


@pytest.fixture(scope="module")
def aged(expiring_server: ServerProcess) -> Iterator[dict[str, str]]:
    """Uploads of every kind on the expiring server, then left alone until the server's own sweeper
    has removed the expired ones (one wait shared by the tests below; the exact rules of expiry,
    410 before the sweep included, are tested in process with a fake clock: tests/unit/test_expiry.py)."""
    with tus_client(expiring_server) as c:
        urls: dict[str, str] = {}
        urls["unfinished"] = create(c, 10)
        assert patch(c, urls["unfinished"], b"abc", 0).status_code == 204
        urls["never_written"] = create(c, 10)
        urls["deferred"] = create(c, None)
        urls["partial"] = create(c, 4, headers={"Upload-Concat": "partial"})
        urls["finished"] = upload(c, b"complete")
        urls["empty"] = create(c, 0)
        done_partial = create(c, 2, headers={"Upload-Concat": "partial"})
        assert patch(c, done_partial, b"ab", 0).status_code == 204
        final = c.post("/files/", headers={"Upload-Concat": "final;" + url_path(done_partial)})
        assert final.status_code == 201
        urls["final_done"] = str(c.base_url.join(final.headers["location"]))
        urls["pending_partial"] = create(c, 3, headers={"Upload-Concat": "partial"})
        pending = c.post("/files/", headers={"Upload-Concat": "final;" + url_path(urls["pending_partial"])})
        assert pending.status_code == 201
        urls["pending_final"] = str(c.base_url.join(pending.headers["location"]))
        urls["late_partial"] = create(c, 3, headers={"Upload-Concat": "partial"})
        gone = [*DOOMED, "pending_final"]
        wait_until(
            lambda: all(c.head(urls[k]).status_code == 404 for k in gone),
            timeout=15,
            message=lambda: f"the sweep; left: {[k for k in gone if c.head(urls[k]).status_code != 404]}",
            server=expiring_server,
        )
    yield urls


DOOMED = ["unfinished", "never_written", "deferred", "partial", "pending_partial", "late_partial"]
KEPT = {"finished": b"complete", "empty": b"", "final_done": b"ab"}


def test_expired_upload_is_gone(expiring: tuple[ServerProcess, httpx.Client], aged: dict[str, str]) -> None:
    """Resuming an expired upload SHOULD get 404 or 410, on HEAD and on PATCH: swept, it is 404."""
    _, c = expiring
    url = aged["unfinished"]
    assert c.head(url).status_code == 404
    assert "upload-offset" not in c.head(url).headers
    assert patch(c, url, b"def", 3).status_code == 404
    assert c.head(aged["never_written"]).status_code == 404
    assert c.head(aged["deferred"]).status_code == 404


def test_sweeper_removes_expired_unfinished_but_not_finished(
    expiring: tuple[ServerProcess, httpx.Client], aged: dict[str, str]
) -> None:
    """The background sweeper removes expired unfinished uploads from disk; finished ones stay."""
    srv, c = expiring

    def swept() -> bool:
        return all(not data_file(srv, aged[k]).exists() and not info_file(srv, aged[k]).exists() for k in DOOMED)

    wait_until(
        swept, timeout=10, message=lambda: f"the sweep; left: {[k for k in DOOMED if data_file(srv, aged[k]).exists()]}"
    )
    for key in DOOMED:
        assert c.head(aged[key]).status_code == 404, key
    for key, content in KEPT.items():
        url = aged[key]
        assert data_file(srv, url).read_bytes() == content, key
        assert info_file(srv, url).exists(), key
        assert c.head(url).status_code == 200, key
        assert c.get(url).content == content, key


def test_finished_final_upload_survives_sweeper(
    expiring: tuple[ServerProcess, httpx.Client], aged: dict[str, str]
) -> None:
    _, c = expiring
    probe = c.head(aged["final_done"])
    assert probe.status_code == 200
    assert probe.headers["upload-offset"] == probe.headers["upload-length"] == "2"
    assert c.get(aged["final_done"]).content == b"ab"


def test_final_upload_whose_partial_expired_is_gone(
    expiring: tuple[ServerProcess, httpx.Client], aged: dict[str, str]
) -> None:
    """concatenation-unfinished + expiration: once a partial that a final upload waits for has
    expired and been removed, the final can never complete. It is an unfinished upload that was
    removed: resuming it SHOULD get 404 or 410, and its files are swept like any expired upload."""
    srv, c = expiring
    partial, final = aged["pending_partial"], aged["pending_final"]
    assert c.head(partial).status_code == 404 and c.head(final).status_code == 404
    for url in (partial, final):
        assert not data_file(srv, url).exists() and not info_file(srv, url).exists()


def test_expired_partial_cannot_be_concatenated(
    expiring: tuple[ServerProcess, httpx.Client], aged: dict[str, str]
) -> None:
    _, c = expiring
    response = c.post("/files/", headers={"Upload-Concat": "final;" + url_path(aged["late_partial"])})
    assert response.status_code == 400  # swept: it names an upload that does not exist
    assert "location" not in response.headers


def test_no_expiration_by_default(server: ServerProcess, client: httpx.Client) -> None:
    assert "expiration" not in extensions(client)
    response = client.post("/files/", headers={"Upload-Length": "3"})
    assert "upload-expires" not in response.headers
    assert "upload-expires" not in client.head(str(client.base_url.join(response.headers["location"]))).headers
