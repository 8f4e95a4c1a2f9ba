"""tusd's CORS flags over a real pytusd: a refused Origin is a 403 that changes nothing, and
--disable-cors, --cors-allow-credentials/-methods/-headers/-expose-headers and --cors-max-age do
what tusd's do (the lists extend the defaults)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.integration.tus_helpers import (
    OCTET,
    assert_plain_4xx,
    assert_rejected,
    create,
    offset_of,
    patch,
    running_server,
    split_list,
    tus_client,
    upload_files,
    url_path,
)
from tests.support.rawhttp import raw_request
from tests.support.server import ServerProcess

GOOD = "https://good.example"
EVIL = "https://evil.example"
PREFLIGHT = {"Access-Control-Request-Method": "PATCH", "Access-Control-Request-Headers": "tus-resumable"}


def _names(value: str | None) -> set[str]:
    return {item.lower() for item in split_list(value or "")}


def _no_cors(headers: httpx.Headers | dict[str, str]) -> None:
    assert not [name for name in headers if name.lower().startswith("access-control-")], headers


def _refused(response: httpx.Response) -> None:
    assert response.status_code == 403, (response.status_code, response.text)
    _no_cors(response.headers)
    if response.request.method != "HEAD":
        assert_rejected(response, forbidden=[b"evil"])
        assert response.text.strip() == "request origin is not allowed"


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory, ["--cors-allow-origin", r"https://good\.example"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def strict_client(strict: ServerProcess) -> Iterator[httpx.Client]:
    with tus_client(strict) as c:
        yield c


# == refused origins =============================================================================


@pytest.mark.parametrize(
    "headers",
    [
        [("Tus-Resumable", "1.0.0"), ("Upload-Length", "5"), ("Content-Type", OCTET)],
        [("Upload-Draft-Interop-Version", "6"), ("Upload-Complete", "?1")],
    ],
    ids=["tus", "ietf"],
)
def test_refused_origin_creation_with_body_stores_nothing(
    strict: ServerProcess, headers: list[tuple[str, str]]
) -> None:
    before = upload_files(strict)
    response = raw_request(strict, "POST", "/files/", [("Origin", EVIL), *headers], b"hello")
    assert response.status == 403, response
    assert response.header("location") is None
    assert response.header("access-control-allow-origin") is None
    assert_plain_4xx(response.status, response.headers, response.body, forbidden=[EVIL.encode()])
    assert upload_files(strict) == before


def test_refused_origin_patch_leaves_the_offset(strict_client: httpx.Client) -> None:
    url = create(strict_client, 5)
    _refused(patch(strict_client, url, b"hello", 0, headers={"Origin": EVIL}))
    assert offset_of(strict_client, url) == 0


def test_refused_origin_head_get_delete(strict_client: httpx.Client) -> None:
    url = create(strict_client, 3)
    assert patch(strict_client, url, b"abc", 0).status_code == 204
    evil = {"Origin": EVIL}
    head = strict_client.head(url, headers=evil)
    _refused(head)
    assert head.content == b""
    _refused(strict_client.get(url, headers=evil))
    _refused(strict_client.delete(url, headers=evil))
    assert strict_client.get(url).content == b"abc"  # still there, on any store


def test_refused_origin_preflight_and_options(strict_client: httpx.Client) -> None:
    _refused(strict_client.options("/files/", headers={"Origin": EVIL, **PREFLIGHT}))
    _refused(strict_client.options("/files/", headers={"Origin": EVIL}))


def test_refused_origin_before_method_override(strict_client: httpx.Client) -> None:
    url = create(strict_client, 1)
    override = {"Origin": EVIL, "X-HTTP-Method-Override": "DELETE"}
    _refused(strict_client.post(url, headers=override))
    assert strict_client.head(url).status_code == 200


def test_same_origin_is_no_exception(strict: ServerProcess, strict_client: httpx.Client) -> None:
    """Browsers send Origin on same-origin POSTs too; tusd does not tell them apart, nor does pytusd:
    a server restricting origins must list its own if its own pages upload."""
    _refused(strict_client.post("/files/", headers={"Origin": strict.base_url, "Upload-Length": "1"}))


def test_allowed_origin_uploads(strict_client: httpx.Client) -> None:
    good = {"Origin": GOOD}
    preflight = strict_client.options("/files/", headers={**good, **PREFLIGHT})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == GOOD
    created = strict_client.post("/files/", headers={**good, "Upload-Length": "2"})
    assert created.status_code == 201
    assert created.headers["access-control-allow-origin"] == GOOD
    url = url_path(created.headers["location"])
    assert patch(strict_client, url, b"ok", 0, headers=good).headers["access-control-allow-origin"] == GOOD
    assert strict_client.get(url, headers=good).content == b"ok"


@pytest.mark.parametrize("headers", [[], [("Origin", "")]])
def test_no_or_empty_origin_is_no_cors_request(strict: ServerProcess, headers: list[tuple[str, str]]) -> None:
    response = raw_request(strict, "POST", "/files/", [*headers, ("Tus-Resumable", "1.0.0"), ("Upload-Length", "1")])
    assert response.status == 201, response
    assert response.header("access-control-allow-origin") is None


# == the list, credential and max-age flags ========================================================


@pytest.fixture(scope="module")
def flagged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = [
        "--cors-allow-credentials",
        "--cors-allow-methods", "PUT, PROPFIND",
        "--cors-allow-headers", "X-Custom-Token,X-Other",
        "--cors-expose-headers", "X-Trace-Id",
        "--cors-max-age", "600",
    ]  # fmt: skip
    with running_server(tmp_path_factory, args) as srv:
        yield srv


def test_flags_extend_preflight(flagged: ServerProcess, server: ServerProcess) -> None:
    with tus_client(flagged) as c, tus_client(server) as d:
        default = d.options("/files/", headers={"Origin": GOOD, **PREFLIGHT})
        response = c.options("/files/", headers={"Origin": GOOD, **PREFLIGHT})
    assert response.status_code == 200
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-max-age"] == "600"
    methods = _names(default.headers["access-control-allow-methods"])
    assert _names(response.headers["access-control-allow-methods"]) == methods | {"put", "propfind"}
    allowed = _names(default.headers["access-control-allow-headers"])
    assert _names(response.headers["access-control-allow-headers"]) == allowed | {"x-custom-token", "x-other"}
    assert "access-control-expose-headers" not in response.headers
    # The defaults: no credentials, a day of caching.
    assert "access-control-allow-credentials" not in default.headers
    assert default.headers["access-control-max-age"] == "86400"


def test_flags_extend_simple_responses(flagged: ServerProcess, server: ServerProcess) -> None:
    with tus_client(flagged) as c, tus_client(server) as d:
        default = d.post("/files/", headers={"Origin": GOOD, "Upload-Length": "1"})
        response = c.post("/files/", headers={"Origin": GOOD, "Upload-Length": "1"})
    assert response.status_code == 201
    assert response.headers["access-control-allow-credentials"] == "true"
    exposed = _names(default.headers["access-control-expose-headers"])
    assert _names(response.headers["access-control-expose-headers"]) == exposed | {"x-trace-id"}
    for name in ("access-control-allow-methods", "access-control-allow-headers", "access-control-max-age"):
        assert name not in response.headers


# == --disable-cors and --behind-proxy =============================================================


def test_disable_cors(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(["--disable-cors", "--cors-allow-origin", r"https://good\.example"])
    with tus_client(srv) as c:
        for origin in (EVIL, GOOD, "junk"):
            created = c.post("/files/", headers={"Origin": origin, "Upload-Length": "1"})
            assert created.status_code == 201
            _no_cors(created.headers)
            options = c.options("/files/", headers={"Origin": origin, **PREFLIGHT})
            assert options.status_code == 200
            assert "tus-version" in options.headers  # the plain tus OPTIONS answer
            _no_cors(options.headers)


def test_behind_proxy_changes_nothing_for_cors(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(["--behind-proxy", "--cors-allow-origin", r"https://good\.example"])
    forwarded = {"X-Forwarded-Host": "good.example", "X-Forwarded-Proto": "https"}
    with tus_client(srv) as c:
        _refused(c.post("/files/", headers={"Origin": EVIL, "Upload-Length": "1", **forwarded}))
        created = c.post("/files/", headers={"Origin": GOOD, "Upload-Length": "1", **forwarded})
        assert created.status_code == 201
        assert created.headers["access-control-allow-origin"] == GOOD
        assert created.headers["location"].startswith("https://good.example/files/")


@pytest.mark.parametrize(
    "args",
    [
        ["--cors-allow-origin", "(unclosed"],
        ["--cors-allow-methods", "PUT GET"],
        ["--cors-allow-headers", "X-Ok,Bad:Header"],
        ["--cors-expose-headers", "X-A\r\nSet-Cookie: x=1"],
        ["--cors-max-age", "-1"],
        ["--cors-max-age", "soon"],
    ],
)
def test_bad_cors_flags_are_refused(args: list[str]) -> None:
    out = subprocess.run([sys.executable, "-m", "pytusd", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, (args, out.stderr)
    assert "cors" in out.stderr
