"""gRPC hooks (``--hooks-grpc``) against a real grpcio server implementing tusd's HookHandler service."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from tests.integration.grpc_hook_helpers import GrpcHookServer
from tests.integration.hook_helpers import HookEndpoint, start_hook_server
from tests.integration.tus_helpers import OCTET, TUS
from tests.support.server import STORE_TYPES, ServerProcess, current_backend
from tests.support.wait import wait_until

from pytusd.hooks.proto import hook_pb2


@pytest.fixture
def hook_server() -> Iterator[GrpcHookServer]:
    hooks = GrpcHookServer()
    with hooks.running():
        yield hooks


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def start(servers: list[ServerProcess], tmp_path: Path, *args: str) -> ServerProcess:
    server = start_hook_server(tmp_path / f"data{len(servers)}", list(args))
    servers.append(server)
    return server


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def one_upload(server: ServerProcess, data: bytes = b"abc", **headers: str) -> tuple[httpx.Response, httpx.Response]:
    """(creation, last response): the PATCH's, or the creation's again if it failed."""
    with httpx.Client(base_url=server.base_url, headers={**TUS, **headers}, timeout=30) as client:
        created = client.post(
            "/files/", headers={"Upload-Length": str(len(data)), "Upload-Metadata": meta(name="a.txt")}
        )
        if created.status_code != 201:
            return created, created
        done = client.patch(
            created.headers["location"], content=data, headers={"Upload-Offset": "0", "Content-Type": OCTET}
        )
        return created, done


def test_events_carry_tusd_fields_and_forwarded_headers(
    hook_server: GrpcHookServer, servers: list, tmp_path: Path
) -> None:
    server = start(
        servers, tmp_path, "--hooks-grpc", hook_server.address, "--hooks-grpc-forward-headers", "Authorization"
    )
    created, done = one_upload(server, Authorization="Bearer abc")
    assert created.status_code == 201 and done.status_code == 204
    # post-receive and post-finish are sent side by side: either may arrive first.
    assert wait_until(lambda: len(hook_server.of("post-finish")) == 1 and hook_server.of("post-receive"))
    # tusd's default events.
    assert {c.type for c in hook_server.calls} == {"pre-create", "post-create", "post-receive", "post-finish"}
    (pre,) = hook_server.of("pre-create")
    upload = pre.request.event.upload
    assert (
        upload.id == ""
        and upload.size == 3
        and not upload.sizeIsDeferred
        and dict(upload.metaData) == {"name": "a.txt"}
    )
    assert dict(upload.storage) == {}
    http = pre.request.event.httpRequest
    assert http.method == "POST" and http.uri == "/files/" and http.remoteAddr.startswith("127.0.0.1")
    assert http.header["Upload-Length"] == "3" and http.header["Authorization"] == "Bearer abc"
    (finish,) = hook_server.of("post-finish")
    upload = finish.request.event.upload
    assert created.headers["location"].endswith("/" + upload.id)
    store_type = STORE_TYPES[current_backend()]
    assert upload.offset == 3 and upload.storage["Type"] == store_type
    for call in hook_server.calls:
        assert call.metadata["authorization"] == "Bearer abc"


def test_pre_create_rejects_with_its_status_and_body(
    hook_server: GrpcHookServer, servers: list, tmp_path: Path
) -> None:
    hook_server.plans["pre-create"] = lambda request: hook_pb2.HookResponse(
        rejectUpload=True,
        httpResponse=hook_pb2.HTTPResponse(statusCode=403, body="no uploads today", header={"X-Why": "quota"}),
    )
    server = start(servers, tmp_path, "--hooks-grpc", hook_server.address)
    created, _ = one_upload(server)
    assert created.status_code == 403 and created.text == "no uploads today"
    assert created.headers["x-why"] == "quota"
    assert hook_server.of("post-create") == []


def test_pre_create_changes_id_and_metadata(hook_server: GrpcHookServer, servers: list, tmp_path: Path) -> None:
    hook_server.plans["pre-create"] = lambda request: hook_pb2.HookResponse(
        changeFileInfo=hook_pb2.FileInfoChanges(id="chosen-by-grpc", metaData={"owner": "alice"})
    )
    server = start(servers, tmp_path, "--hooks-grpc", hook_server.address)
    created, done = one_upload(server)
    assert created.status_code == 201 and created.headers["location"].endswith("/chosen-by-grpc")
    assert done.status_code == 204
    with httpx.Client(headers=TUS, timeout=30) as client:
        head = client.head(created.headers["location"])
    assert head.headers["upload-metadata"] == meta(owner="alice")
    assert wait_until(lambda: hook_server.of("post-create"))
    assert hook_server.of("post-create")[0].request.event.upload.id == "chosen-by-grpc"


def test_unavailable_is_retried(hook_server: GrpcHookServer, servers: list, tmp_path: Path) -> None:
    hook_server.plans["pre-create"] = {"fail_times": 2}
    server = start(
        servers,
        tmp_path,
        "--hooks-grpc",
        hook_server.address,
        "--hooks-grpc-retry",
        "3",
        "--hooks-grpc-backoff",
        "50ms",
    )
    created, _ = one_upload(server)
    assert created.status_code == 201
    assert len(hook_server.of("pre-create")) == 3


def test_failures_fail_blocking_hooks(hook_server: GrpcHookServer, servers: list, tmp_path: Path) -> None:
    hook_server.plans["pre-create"] = {"abort": grpc.StatusCode.INTERNAL}
    server = start(servers, tmp_path, "--hooks-grpc", hook_server.address, "--hooks-grpc-backoff", "10ms")
    created, _ = one_upload(server)
    assert created.status_code == 502
    assert len(hook_server.of("pre-create")) == 1  # INTERNAL is not retried (as tusd)


def test_invalid_chosen_id_is_a_client_error(hook_server: GrpcHookServer, servers: list, tmp_path: Path) -> None:
    hook_server.plans["pre-create"] = lambda request: hook_pb2.HookResponse(
        changeFileInfo=hook_pb2.FileInfoChanges(id="../../escape")
    )
    server = start(servers, tmp_path, "--hooks-grpc", hook_server.address)
    created, _ = one_upload(server)
    assert created.status_code == 400
    assert wait_until(lambda: "invalid upload ID: '../../escape'" in server.log())


def test_two_transports_run_in_order(hook_server: GrpcHookServer, servers: list, tmp_path: Path) -> None:
    endpoint = HookEndpoint()
    seen: list[dict[str, str]] = []

    def grpc_pre_create(request: hook_pb2.HookRequest) -> hook_pb2.HookResponse:
        seen.append(dict(request.event.upload.metaData))
        if request.event.upload.metaData.get("name") == "refuse":
            return hook_pb2.HookResponse(rejectUpload=True, httpResponse=hook_pb2.HTTPResponse(statusCode=409))
        return hook_pb2.HookResponse(changeFileInfo=hook_pb2.FileInfoChanges(id="from-grpc"))

    hook_server.plans["pre-create"] = grpc_pre_create
    with endpoint.running():
        endpoint.plans["pre-create"] = lambda document: (
            (200, b'{"RejectUpload": true, "HTTPResponse": {"StatusCode": 418}}')
            if document["Event"]["Upload"]["MetaData"].get("name") == "teapot"
            else (200, b'{"ChangeFileInfo": {"ID": "from-http", "MetaData": {"name": "renamed"}}}')
        )
        server = start(servers, tmp_path, "--hooks-http", endpoint.url, "--hooks-grpc", hook_server.address)
        with httpx.Client(base_url=server.base_url, headers=TUS, timeout=30) as client:
            # HTTP runs first; gRPC sees its metadata change, and its ID wins (later transport).
            created = client.post("/files/", headers={"Upload-Length": "1", "Upload-Metadata": meta(name="x")})
            assert created.status_code == 201 and created.headers["location"].endswith("/from-grpc")
            assert seen == [{"name": "renamed"}]
            assert client.head(created.headers["location"]).headers["upload-metadata"] == meta(name="renamed")
            # The first rejection wins: gRPC is not asked.
            refused = client.post("/files/", headers={"Upload-Length": "1", "Upload-Metadata": meta(name="teapot")})
            assert refused.status_code == 418 and len(seen) == 1
        # Non-blocking events go to both.
        assert wait_until(lambda: endpoint.of("post-create") and hook_server.of("post-create"))
    assert hook_server.of("post-create")[0].request.event.upload.id == "from-grpc"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_mutual_tls(servers: list, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for name, cn in (("server", "localhost"), ("client", "pytusd")):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={cn}",
            "-addext", f"subjectAltName=DNS:{cn}",
            "-keyout", str(certs / f"{name}.key"), "-out", str(certs / f"{name}.pem"),
        )  # fmt: skip
    credentials = grpc.ssl_server_credentials(
        [((certs / "server.key").read_bytes(), (certs / "server.pem").read_bytes())],
        root_certificates=(certs / "client.pem").read_bytes(),
        require_client_auth=True,
    )
    hooks = GrpcHookServer()
    with hooks.running(credentials, host="localhost"):
        tls = ["--hooks-grpc-secure", "--hooks-grpc-server-tls-certificate", str(certs / "server.pem")]
        server = start(
            servers, tmp_path, "--hooks-grpc", f"localhost:{hooks.port}", *tls,
            "--hooks-grpc-client-tls-certificate", str(certs / "client.pem"),
            "--hooks-grpc-client-tls-key", str(certs / "client.key"),
            "--hooks-grpc-retry", "0",
        )  # fmt: skip
        created, _ = one_upload(server)
        assert created.status_code == 201 and len(hooks.of("pre-create")) == 1
        # Without the client certificate the server refuses the handshake: the blocking hook fails.
        plain = start(servers, tmp_path, "--hooks-grpc", f"localhost:{hooks.port}", *tls, "--hooks-grpc-retry", "0")
        refused, _ = one_upload(plain)
        assert refused.status_code == 502 and len(hooks.of("pre-create")) == 1
