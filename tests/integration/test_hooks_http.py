"""HTTP hooks (``--hooks-http``) against a real endpoint on loopback: flags, retries, limits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.integration.hook_helpers import HookEndpoint, start_hook_server
from tests.integration.tus_helpers import OCTET, TUS
from tests.support.server import ServerProcess, free_port
from tests.support.wait import wait_until


@pytest.fixture
def endpoint() -> Iterator[HookEndpoint]:
    hook = HookEndpoint()
    with hook.running():
        yield hook


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def start(servers: list[ServerProcess], tmp_path: Path, *args: str) -> ServerProcess:
    server = start_hook_server(tmp_path / f"data{len(servers)}", list(args))
    servers.append(server)
    return server


def one_upload(server: ServerProcess, **headers: str) -> httpx.Response:
    with httpx.Client(base_url=server.base_url, headers={**TUS, **headers}, timeout=30) as client:
        created = client.post("/files/", headers={"Upload-Length": "3"})
        if created.status_code != 201:
            return created
        url = created.headers["location"]
        return client.patch(url, content=b"abc", headers={"Upload-Offset": "0", "Content-Type": OCTET})


def test_default_events_and_forwarded_headers(endpoint: HookEndpoint, servers: list, tmp_path: Path) -> None:
    server = start(
        servers, tmp_path, "--hooks-http", endpoint.url, "--hooks-http-forward-headers", "Authorization,Cookie"
    )
    done = one_upload(server, Authorization="Bearer abc", Cookie="session=1")
    assert done.status_code == 204
    assert wait_until(lambda: len(endpoint.of("post-finish")) == 1)
    # tusd's defaults: pre-finish, pre-terminate (and pytusd's pre-access) are opt-in.
    assert {c.type for c in endpoint.calls} == {"pre-create", "post-create", "post-receive", "post-finish"}
    for call in endpoint.calls:
        assert call.headers["Authorization"] == "Bearer abc" and call.headers["Cookie"] == "session=1"
        assert call.headers["Content-Type"].startswith("application/json")


def test_headers_are_not_forwarded_unless_asked(endpoint: HookEndpoint, servers: list, tmp_path: Path) -> None:
    server = start(servers, tmp_path, "--hooks-http", endpoint.url, "--hooks-enabled-events", "pre-create")
    assert one_upload(server, Authorization="Bearer abc").status_code == 204
    (call,) = endpoint.calls
    assert "Authorization" not in call.headers
    assert call.document["Event"]["HTTPRequest"]["Header"]["Authorization"] == ["Bearer abc"]  # but in the JSON


def test_retries_hide_a_flaky_endpoint(endpoint: HookEndpoint, servers: list, tmp_path: Path) -> None:
    endpoint.plans["pre-create"] = {"fail_times": 2, "response": {}}
    server = start(
        servers, tmp_path, "--hooks-http", endpoint.url, "--hooks-http-retry", "2", "--hooks-http-backoff", "100ms"
    )
    start_time = time.monotonic()
    assert one_upload(server).status_code == 204
    assert time.monotonic() - start_time >= 0.2
    assert len(endpoint.of("pre-create")) == 3


def test_retries_exhausted_fail_the_request(endpoint: HookEndpoint, servers: list, tmp_path: Path) -> None:
    endpoint.plans["pre-create"] = {"status": 500, "body": "database down"}
    server = start(
        servers, tmp_path, "--hooks-http", endpoint.url, "--hooks-http-retry", "1", "--hooks-http-backoff", "10ms"
    )
    response = one_upload(server)
    assert 500 <= response.status_code <= 599
    assert response.text.strip() == "hook failed: pre-create HTTP hook endpoint answered 500"
    assert "database down" not in response.text
    assert len(endpoint.of("pre-create")) == 2


def test_unreachable_endpoint(servers: list, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks"
    blocking = start(servers, tmp_path, "--hooks-http", url, "--hooks-http-retry", "0")
    response = one_upload(blocking)
    assert 500 <= response.status_code <= 599 and "unreachable" in response.text
    # Only non-blocking events: uploads go on, failures are logged.
    quiet = start(
        servers, tmp_path, "--hooks-http", url, "--hooks-http-retry", "0",
        "--hooks-enabled-events", "post-create,post-receive,post-finish",
    )  # fmt: skip
    assert one_upload(quiet).status_code == 204
    assert wait_until(lambda: "post-finish failed" in quiet.log())


def test_timeout_and_size_limit_flags(endpoint: HookEndpoint, servers: list, tmp_path: Path) -> None:
    endpoint.plans["pre-create"] = {"sleep": 6.0}
    endpoint.plans["pre-finish"] = {"response": {"HTTPResponse": {"Body": "x" * 500}}}
    server = start(
        servers, tmp_path, "--hooks-http", endpoint.url, "--hooks-enabled-events", "pre-create,pre-finish",
        "--hooks-http-timeout", "300ms", "--hooks-http-retry", "0", "--hooks-http-size-limit", "200",
    )  # fmt: skip
    start_time = time.monotonic()
    response = one_upload(server)
    assert 500 <= response.status_code <= 599
    assert response.text.strip() == "hook failed: pre-create HTTP hook timed out after 0.3s"
    assert time.monotonic() - start_time < 5.0  # cut off by the 300 ms timeout, not waited for
    endpoint.plans.pop("pre-create")
    response = one_upload(server)
    assert 500 <= response.status_code <= 599
    assert "larger than 200 bytes" in response.text
