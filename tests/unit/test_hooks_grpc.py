"""GrpcHooks on its own: tusd's message mapping, attempts, time limits, metadata (a grpcio server on loopback)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from pytusd.hooks import GrpcHooks, HookError, HookEvent, HookRequest, HookResponse
from pytusd.hooks.grpc import from_message, to_message
from pytusd.hooks.proto import hook_pb2
from pytusd.info import UploadInfo
from tests.integration.grpc_hook_helpers import GrpcHookServer

REQUEST = HookRequest("PATCH", "/files/up1", "127.0.0.1:5000", {"Authorization": ["a", "b"], "X-Other": ["1"]})
INFO = UploadInfo(id="up1", size=None, offset=3, metadata={"name": "a"}, storage={"Type": "filestore"})


def run(hooks: GrpcHooks, event: HookEvent) -> HookResponse:
    async def go() -> HookResponse:
        try:
            return await hooks.run(event, INFO, REQUEST)
        finally:
            await hooks.aclose()

    return asyncio.run(asyncio.wait_for(go(), 30))


def test_messages_follow_tusd_marshal() -> None:
    message = to_message(HookEvent.POST_RECEIVE, INFO, REQUEST)
    upload = message.event.upload
    assert message.type == "post-receive" and upload.id == "up1" and upload.sizeIsDeferred and upload.size == 0
    assert dict(upload.storage) == {"Type": "filestore"} and dict(upload.metaData) == {"name": "a"}
    assert dict(message.event.httpRequest.header) == {"Authorization": "a", "X-Other": "1"}  # first values
    pre = to_message(HookEvent.PRE_CREATE, INFO, REQUEST).event.upload
    assert pre.id == "" and dict(pre.storage) == {}


def test_zero_values_are_not_set() -> None:
    empty = from_message(hook_pb2.HookResponse(changeFileInfo=hook_pb2.FileInfoChanges()))
    assert empty == HookResponse()
    full = from_message(
        hook_pb2.HookResponse(
            rejectUpload=True,
            httpResponse=hook_pb2.HTTPResponse(statusCode=409, body="b", header={"X": "1"}),
            changeFileInfo=hook_pb2.FileInfoChanges(id="n", metaData={"k": "v"}, storage={"Path": "p"}),
        )
    )
    assert full == HookResponse(
        status=409, body="b", headers={"X": "1"}, reject_upload=True, change_id="n",
        change_metadata={"k": "v"}, change_storage={"Path": "p"},
    )  # fmt: skip


@pytest.mark.parametrize(("retries", "calls"), [(0, 1), (1, 1), (3, 3)])
def test_retry_counts_attempts_as_tusd(retries: int, calls: int) -> None:
    server = GrpcHookServer(plans={"pre-finish": {"fail_times": 100}})
    with server.running():
        hooks = GrpcHooks(server.address, ["pre-finish"], retries=retries, backoff=0)
        with pytest.raises(HookError) as caught:
            run(hooks, HookEvent.PRE_FINISH)
    assert caught.value.status == 502 and "UNAVAILABLE" in str(caught.value)
    assert len(server.of("pre-finish")) == calls


def test_a_hanging_server_times_out() -> None:
    release = threading.Event()

    def hang(request: Any) -> hook_pb2.HookResponse:
        release.wait(30)
        return hook_pb2.HookResponse()

    server = GrpcHookServer(plans={"pre-create": hang})
    with server.running():
        try:
            hooks = GrpcHooks(server.address, ["pre-create"], retries=2, backoff=0, timeout=0.2)
            with pytest.raises(HookError) as caught:
                run(hooks, HookEvent.PRE_CREATE)
        finally:
            release.set()
    assert caught.value.status == 504 and len(server.of("pre-create")) == 2


def test_unreachable_server_fails_blocking_hooks_only() -> None:
    hooks = GrpcHooks("127.0.0.1:1", ["pre-create", "post-finish"], retries=0)
    with pytest.raises(HookError):
        run(hooks, HookEvent.PRE_CREATE)
    assert run(GrpcHooks("127.0.0.1:1", ["post-finish"], retries=0), HookEvent.POST_FINISH) == HookResponse()


def test_forwarded_headers_are_metadata() -> None:
    server = GrpcHookServer()
    with server.running():
        run(
            GrpcHooks(server.address, ["post-finish"], forward_headers=["Authorization", "Missing"]),
            HookEvent.POST_FINISH,
        )
    (call,) = server.of("post-finish")
    assert call.metadata["authorization"] == "a" and "missing" not in call.metadata


def test_secure_needs_the_server_certificate() -> None:
    with pytest.raises(ValueError, match="server-tls-certificate"):
        GrpcHooks("localhost:1", secure=True)
