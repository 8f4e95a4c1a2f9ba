"""CORS for browsers and URLs behind proxies (spec/README.md, tusd's behaviour) over a real pytusd."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.integration.tus_helpers import (
    OCTET,
    bare_client,
    create,
    patch,
    running_server,
    split_list,
    tus_client,
    upload,
    upload_files,
    url_path,
)
from tests.support.rawhttp import raw_request
from tests.support.server import ServerProcess

ORIGIN = "https://app.example.com"

README_ALLOW_METHODS = ["POST", "HEAD", "PATCH", "DELETE", "OPTIONS", "GET"]
README_ALLOW_HEADERS = [
    "Authorization",
    "Origin",
    "X-Requested-With",
    "X-Request-ID",
    "X-HTTP-Method-Override",
    "Content-Type",
    "Upload-Length",
    "Upload-Offset",
    "Tus-Resumable",
    "Upload-Metadata",
    "Upload-Defer-Length",
    "Upload-Concat",
    "Upload-Complete",
    "Upload-Draft-Interop-Version",
    "Upload-Checksum",
]
README_EXPOSE_HEADERS = [
    "Upload-Offset",
    "Location",
    "Upload-Length",
    "Tus-Version",
    "Tus-Resumable",
    "Tus-Max-Size",
    "Tus-Extension",
    "Upload-Metadata",
    "Upload-Defer-Length",
    "Upload-Concat",
    "Upload-Complete",
    "Upload-Limit",
    "Upload-Expires",
    "Upload-Draft-Interop-Version",
]


def _lower_list(value: str) -> set[str]:
    return {item.lower() for item in split_list(value)}


def _assert_simple_cors(response: httpx.Response, origin: str = ORIGIN) -> None:
    assert response.headers.get("access-control-allow-origin") == origin, response.headers
    exposed = _lower_list(response.headers.get("access-control-expose-headers", ""))
    missing = {h.lower() for h in README_EXPOSE_HEADERS} - exposed
    assert not missing, missing
    assert "origin" in _lower_list(response.headers.get("vary", ""))


# == CORS ======================================================================================


@pytest.mark.parametrize("path", ["/files/", "/files/someupload"])
def test_preflight(server: ServerProcess, path: str) -> None:
    """Preflight: 200 (not 204), allow the origin, every method and header browsers' tus clients use."""
    headers = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "tus-resumable,upload-offset,content-type",
    }
    response = bare_client(server).options(path, headers=headers)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    methods = _lower_list(response.headers["access-control-allow-methods"])
    assert {m.lower() for m in README_ALLOW_METHODS} <= methods
    allowed = _lower_list(response.headers["access-control-allow-headers"])
    missing = {h.lower() for h in README_ALLOW_HEADERS} - allowed
    assert not missing, missing
    assert int(response.headers["access-control-max-age"]) >= 0
    assert "origin" in _lower_list(response.headers.get("vary", ""))


def test_simple_responses_carry_cors_headers(server: ServerProcess, client: httpx.Client) -> None:
    """Every response to a browser request (success or error) carries Allow-Origin and Expose-Headers."""
    hdr = {"Origin": ORIGIN}
    created = client.post("/files/", headers={**hdr, "Upload-Length": "5"})
    assert created.status_code == 201
    _assert_simple_cors(created)
    url = str(client.base_url.join(created.headers["location"]))
    _assert_simple_cors(client.head(url, headers=hdr))
    _assert_simple_cors(patch(client, url, b"hello", 0, headers=hdr))
    _assert_simple_cors(client.get(url, headers=hdr))
    _assert_simple_cors(client.options("/files/", headers=hdr))
    _assert_simple_cors(patch(client, url, b"x", 0, headers=hdr))  # 409
    _assert_simple_cors(client.head("/files/nope", headers=hdr))  # 404
    _assert_simple_cors(client.delete(url, headers=hdr))
    with bare_client(server) as bare:
        _assert_simple_cors(bare.post("/files/", headers={**hdr, "Upload-Length": "1"}))  # 412


def test_no_origin_no_cors_headers(client: httpx.Client) -> None:
    response = client.post("/files/", headers={"Upload-Length": "1"})
    assert "access-control-allow-origin" not in response.headers


@pytest.fixture(scope="module")
def strict_cors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory, ["--cors-allow-origin", r"https://good\.example(:8443)?"]) as srv:
        yield srv


@pytest.mark.parametrize("origin", ["https://good.example", "https://good.example:8443"])
def test_cors_allow_origin_accepts_matching(strict_cors: ServerProcess, origin: str) -> None:
    with tus_client(strict_cors) as c:
        _assert_simple_cors(c.post("/files/", headers={"Origin": origin, "Upload-Length": "1"}), origin)
        preflight = c.options("/files/", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://good.example.evil.com",
        "https://goodXexample",
        "http://good.example",
        "https://good.example:9999",
        "https://sub.good.example",
    ],
)
def test_cors_allow_origin_refuses_others(strict_cors: ServerProcess, origin: str) -> None:
    with tus_client(strict_cors) as c:
        simple = c.post("/files/", headers={"Origin": origin, "Upload-Length": "1"})
        assert simple.status_code == 403  # as tusd (ERR_ORIGIN_NOT_ALLOWED)
        assert "access-control-allow-origin" not in simple.headers
        preflight = c.options("/files/", headers={"Origin": origin, "Access-Control-Request-Method": "PATCH"})
        assert preflight.status_code == 403
        assert "access-control-allow-origin" not in preflight.headers
        assert "access-control-allow-methods" not in preflight.headers
        for value in preflight.headers.values():
            assert origin not in value


def test_cors_disabled_with_empty_pattern(server_factory: Callable[..., ServerProcess]) -> None:
    srv = server_factory(["--cors-allow-origin", ""])
    with tus_client(srv) as c:
        response = c.post("/files/", headers={"Origin": ORIGIN, "Upload-Length": "1"})
        assert response.status_code == 201
        assert "access-control-allow-origin" not in response.headers


JUNK_ORIGINS: list[bytes] = [
    b"https://a.example/path",
    b"https://a.example, https://b.example",
    b"https://a.example https://b.example",
    b"javascript:alert(1)",
    b"https://a.example<script>",
    b"https://a.example;x=1",
    b"https://user:pass@a.example",
    b"https://a.example?x",
    b"https://a.example#x",
    b"https://\xc3\xa9.example",
    b"https://a.example:99999999",
    b"*",
    b"https://" + b"a" * 400 + b".example",
]


@pytest.mark.parametrize("origin", JUNK_ORIGINS)
def test_junk_origin_never_echoed(server: ServerProcess, origin: bytes) -> None:
    """An Origin that is not scheme://host[:port] is never reflected into a response header."""
    for method, extra in (
        ("OPTIONS", [("Access-Control-Request-Method", "PATCH")]),
        ("POST", [("Tus-Resumable", "1.0.0"), ("Upload-Length", "1")]),
        ("HEAD", [("Tus-Resumable", "1.0.0")]),
    ):
        target = "/files/" if method != "HEAD" else "/files/nope"
        response = raw_request(server, method, target, [("Origin", origin), *extra])
        assert response.status == 403  # never an allowed origin, whatever --cors-allow-origin says
        assert response.header("access-control-allow-origin") is None
        assert origin not in response.raw_head, (method, origin)


# == proxies ===================================================================================


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory, ["--behind-proxy"]) as srv:
        yield srv


@pytest.mark.parametrize(
    ("headers", "prefix"),
    [
        ({"X-Forwarded-Host": "proxy.example", "X-Forwarded-Proto": "https"}, "https://proxy.example/files/"),
        ({"X-Forwarded-Host": "proxy.example:8443", "X-Forwarded-Proto": "https"}, "https://proxy.example:8443/files/"),
        ({"X-Forwarded-Host": "proxy.example"}, "http://proxy.example/files/"),
        ({"X-Forwarded-Proto": "https"}, "https://{host}/files/"),
        ({"X-Forwarded-Proto": "HTTPS"}, "https://{host}/files/"),
        ({"X-Forwarded-Host": "a.example, b.example", "X-Forwarded-Proto": "https, http"}, "https://a.example/files/"),
        ({"Forwarded": "host=proxy.example;proto=https"}, "https://proxy.example/files/"),
        ({"Forwarded": 'for=192.0.2.1;host="proxy.example:444";proto=https'}, "https://proxy.example:444/files/"),
        ({"Forwarded": "proto=https;host=a.example, proto=http;host=b.example"}, "https://a.example/files/"),
        ({"Forwarded": "HOST=proxy.example;PROTO=https"}, "https://proxy.example/files/"),
        ({"X-Forwarded-Proto": "ftp"}, "http://{host}/files/"),
        ({"X-Forwarded-Proto": "javascript"}, "http://{host}/files/"),
        ({"Forwarded": "proto=gopher;host=proxy.example"}, "http://proxy.example/files/"),
    ],
)
def test_behind_proxy_location(proxied: ServerProcess, headers: dict[str, str], prefix: str) -> None:
    host = f"{proxied.host}:{proxied.port}"
    with tus_client(proxied) as c:
        response = c.post("/files/", headers={"Upload-Length": "1", **headers})
        assert response.status_code == 201
        location = response.headers["location"]
        assert location.startswith(prefix.format(host=host)), location
        # The upload behind that URL is reachable through the real address.
        assert c.head(url_path(location)).status_code == 200


def test_behind_proxy_concatenation_with_proxy_urls(proxied: ServerProcess) -> None:
    """Absolute partial URLs as the client saw them (the proxy's host) name this server's uploads."""
    fwd = {"X-Forwarded-Host": "proxy.example", "X-Forwarded-Proto": "https"}
    with tus_client(proxied) as c:
        urls = []
        for data in (b"abc", b"def"):
            created = c.post("/files/", headers={"Upload-Length": "3", "Upload-Concat": "partial", **fwd})
            urls.append(created.headers["location"])
            assert patch(c, url_path(created.headers["location"]), data, 0).status_code == 204
        final = c.post("/files/", headers={"Upload-Concat": "final;" + " ".join(urls), **fwd})
        assert final.status_code == 201
        assert final.headers["location"].startswith("https://proxy.example/files/")
        assert c.get(url_path(final.headers["location"])).content == b"abcdef"


@pytest.mark.parametrize(
    ("forwarded", "partial_origin"),
    [
        ({"X-Forwarded-Host": "proxy.example", "X-Forwarded-Proto": "https"}, "http://{real}"),
        ({"X-Forwarded-Host": "proxy.example", "X-Forwarded-Proto": "https"}, "http://proxy.example"),
        ({"Forwarded": "host=proxy.example;proto=https"}, "https://other.example"),
        ({}, "https://proxy.example"),
    ],
)
def test_behind_proxy_concatenation_refuses_other_origins(
    proxied: ServerProcess, forwarded: dict[str, str], partial_origin: str
) -> None:
    """Behind a trusted proxy, the origin a partial's URL must have is the one the client used
    (the forwarded one): the server's own address, or another scheme, is another origin (400)."""
    real = f"{proxied.host}:{proxied.port}"
    with tus_client(proxied) as c:
        partial = create(c, 3, headers={"Upload-Concat": "partial"})
        assert patch(c, partial, b"abc", 0).status_code == 204
        url = partial_origin.format(real=real) + url_path(partial)
        before = upload_files(proxied)
        final = c.post("/files/", headers={"Upload-Concat": "final;" + url, **forwarded})
        assert final.status_code == 400, final.text
        assert "location" not in final.headers
        assert upload_files(proxied) == before


def test_concatenation_url_of_the_forwarded_host_without_the_flag(server: ServerProcess, client: httpx.Client) -> None:
    """Forwarded headers are not trusted without --behind-proxy: the proxy's URL is another origin."""
    partial = create(client, 3, headers={"Upload-Concat": "partial"})
    assert patch(client, partial, b"abc", 0).status_code == 204
    fwd = {"X-Forwarded-Host": "proxy.example", "X-Forwarded-Proto": "https"}
    refused = client.post(
        "/files/", headers={"Upload-Concat": "final;https://proxy.example" + url_path(partial), **fwd}
    )
    assert refused.status_code == 400
    accepted = client.post("/files/", headers={"Upload-Concat": "final;" + partial, **fwd})
    assert accepted.status_code == 201


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Host": "evil.example/path"},
        {"X-Forwarded-Host": "evil.example@other"},
        {"X-Forwarded-Host": "<script>"},
        {"Forwarded": 'host="evil.example/x"'},
        {"Forwarded": 'host="evil example"'},
        {"Forwarded": 'host="evil.example\\"x"'},
    ],
)
def test_behind_proxy_junk_forwarded_host(proxied: ServerProcess, headers: dict[str, str]) -> None:
    """A forwarded host that is no host name never ends up in Location."""
    before = upload_files(proxied)
    with tus_client(proxied) as c:
        response = c.post("/files/", headers={"Upload-Length": "1", **headers})
        if response.status_code == 201:
            location = response.headers["location"]
            assert location.startswith(f"http://{proxied.host}:{proxied.port}/files/"), location
        else:
            assert 400 <= response.status_code < 500
            for value in headers.values():
                assert value.encode() not in response.content
            # Refused means refused: no upload left behind without a URL to reach it.
            assert upload_files(proxied) == before


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Host": "proxy.example", "X-Forwarded-Proto": "https"},
        {"Forwarded": "host=proxy.example;proto=https"},
    ],
)
def test_forwarded_headers_ignored_without_flag(
    server: ServerProcess, client: httpx.Client, headers: dict[str, str]
) -> None:
    response = client.post("/files/", headers={"Upload-Length": "1", **headers})
    assert response.status_code == 201
    assert response.headers["location"].startswith(f"http://{server.host}:{server.port}/files/")


def test_location_uses_host_header(server: ServerProcess) -> None:
    response = raw_request(
        server, "POST", "/files/", [("Host", "files.example:8080"), ("Tus-Resumable", "1.0.0"), ("Upload-Length", "1")]
    )
    assert response.status == 201
    assert (response.header("location") or "").startswith("http://files.example:8080/files/")


@pytest.mark.parametrize(
    "host",
    [
        b"bad host",
        b"evil.example/path",
        b"a@b.example",
        b"<script>",
        b"[::1",
        b"example.com:port",
        b"example.com:123456",
        b"ex\xc3\xa4mple.com",
    ],
)
def test_bad_host_header_400(server: ServerProcess, host: bytes) -> None:
    """A Host that is not a host name is a 400, and the refused create leaves no upload behind."""
    before = upload_files(server)
    response = raw_request(
        server, "POST", "/files/", [("Host", host), ("Tus-Resumable", "1.0.0"), ("Upload-Length", "1")], host=None
    )
    assert response.status == 400, response
    assert response.header("location") is None
    if host:
        assert host not in response.body
    assert upload_files(server) == before


def test_bad_host_header_creation_with_upload(server: ServerProcess) -> None:
    before = upload_files(server)
    response = raw_request(
        server,
        "POST",
        "/files/",
        [("Host", "bad host"), ("Tus-Resumable", "1.0.0"), ("Upload-Length", "5"), ("Content-Type", OCTET)],
        b"hello",
        host=None,
    )
    assert response.status == 400
    assert upload_files(server) == before


def test_proxy_headers_do_not_affect_other_requests(proxied: ServerProcess) -> None:
    with tus_client(proxied) as c:
        url = create(c, 3)
        assert upload(c, b"xyz")
        response = c.head(url, headers={"X-Forwarded-Host": "elsewhere.example"})
        assert response.status_code == 200
