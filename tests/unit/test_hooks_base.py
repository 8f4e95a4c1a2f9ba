"""tusd's hook JSON in and out, validation, event lists, pacing of post-receive, the flags."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from pytusd.flags import Flag
from pytusd.hooks import (
    BLOCKING_EVENTS,
    FileHooks,
    HookError,
    HookEvent,
    HookRequest,
    HookResponse,
    HttpHooks,
    InvalidHookResponse,
    NoHooks,
    ProgressPacer,
    hook_input,
)
from pytusd.hooks.base import DEFAULT_EVENTS, TUSD_EVENTS, is_safe_upload_id, parse_events, validate_response
from pytusd.hooks.flags import HOOK_FLAGS, hooks_from_settings
from pytusd.info import UploadInfo

REQUEST = HookRequest("PATCH", "/files/abc?x=1", "127.0.0.1:5000", {"Host": ["h"], "Tus-Resumable": ["1.0.0"]})


def test_hook_input_is_tusd_field_for_field() -> None:
    info = UploadInfo(
        id="abc", size=10, offset=4, metadata={"filename": "a.txt"}, storage={"Type": "filestore", "Path": "/d/abc"}
    )
    document = hook_input(HookEvent.POST_RECEIVE, info, REQUEST)
    assert document == {
        "Type": "post-receive",
        "Event": {
            "Upload": {
                "ID": "abc",
                "Size": 10,
                "SizeIsDeferred": False,
                "Offset": 4,
                "MetaData": {"filename": "a.txt"},
                "IsPartial": False,
                "IsFinal": False,
                "PartialUploads": None,
                "Storage": {"Type": "filestore", "Path": "/d/abc"},
            },
            "HTTPRequest": {
                "Method": "PATCH",
                "URI": "/files/abc?x=1",
                "RemoteAddr": "127.0.0.1:5000",
                "Header": {"Host": ["h"], "Tus-Resumable": ["1.0.0"]},
            },
        },
    }
    json.dumps(document)  # serializable as is


def test_hook_input_pre_create_has_no_id_nor_storage_and_deferred_size_is_zero() -> None:
    info = UploadInfo(id="proposed", size=None, storage={"Path": "x"})
    upload = hook_input(HookEvent.PRE_CREATE, info, REQUEST)["Event"]["Upload"]
    assert upload["ID"] == "" and upload["Storage"] is None
    assert upload["Size"] == 0 and upload["SizeIsDeferred"] is True


def test_hook_input_final_upload_lists_partials() -> None:
    info = UploadInfo(id="f", size=3, is_final=True, partial_uploads=["a", "b"])
    upload = hook_input(HookEvent.POST_FINISH, info, REQUEST)["Event"]["Upload"]
    assert upload["IsFinal"] is True and upload["PartialUploads"] == ["a", "b"]


def test_request_header_lookup_ignores_case() -> None:
    request = HookRequest("GET", "/", "", {"Authorization": ["Bearer x", "Bearer y"]})
    assert request.header("authorization") == "Bearer x"
    assert request.header("cookie") is None


def test_response_from_tusd_json() -> None:
    response = HookResponse.from_json(
        {
            "HTTPResponse": {"StatusCode": 413, "Body": '{"message":"too big"}', "Header": {"Content-Type": "x/y"}},
            "RejectUpload": True,
            "RejectTermination": False,
            "ChangeFileInfo": {"ID": "user/1", "MetaData": {"a": "b"}, "Storage": {"Path": "p"}},
            "StopUpload": True,
            "SomethingNew": 1,
        }
    )
    assert response == HookResponse(
        status=413,
        body='{"message":"too big"}',
        headers={"Content-Type": "x/y"},
        reject_upload=True,
        change_id="user/1",
        change_metadata={"a": "b"},
        change_storage={"Path": "p"},
        stop_upload=True,
    )
    assert HookResponse.from_json(response.to_json()) == response


def test_response_keys_match_in_any_case_like_go() -> None:
    response = HookResponse.from_json({"httpresponse": {"statuscode": 401}, "rejectupload": True})
    assert response.status == 401 and response.reject_upload


def test_response_older_headers_name_and_zero_values() -> None:
    response = HookResponse.from_json({"HTTPResponse": {"StatusCode": 0, "Body": "", "Headers": {"X-A": "1"}}})
    assert response.status is None and response.body is None and response.headers == {"X-A": "1"}
    empty = HookResponse.from_json({"ChangeFileInfo": {"ID": ""}, "HTTPResponse": None})
    assert empty == HookResponse()


def test_response_pytusd_reject_access() -> None:
    assert HookResponse.from_json({"RejectAccess": True}).reject_access
    assert HookResponse(reject_access=True).to_json() == {"RejectAccess": True}


@pytest.mark.parametrize(
    "data",
    [
        [],
        "yes",
        {"HTTPResponse": []},
        {"HTTPResponse": {"StatusCode": "400"}},
        {"HTTPResponse": {"StatusCode": True}},
        {"HTTPResponse": {"Body": 3}},
        {"HTTPResponse": {"Header": {"X": 1}}},
        {"RejectUpload": "true"},
        {"StopUpload": 1},
        {"ChangeFileInfo": {"ID": 5}},
        {"ChangeFileInfo": {"MetaData": {"a": None}}},
        {"ChangeFileInfo": "x"},
    ],
)
def test_response_wrong_types_are_invalid(data: Any) -> None:
    with pytest.raises(InvalidHookResponse):
        HookResponse.from_json(data)


def test_helpers_build_rejections_and_stops() -> None:
    rejection = HookResponse.reject(413, "too big", {"X-Why": "size"})
    assert rejection.reject_upload and rejection.reject_termination and rejection.reject_access
    assert rejection.status == 413 and rejection.headers == {"X-Why": "size"}
    assert HookResponse.stop(409).stop_upload


@pytest.mark.parametrize(
    "upload_id",
    ["../x", "/abs", "a/", "a//b", "a/./b", "a b", "x.info", "a/b.lock", ".pytusd-tmp/x", "", "é", "a\nb", "x" * 300],
)
def test_hook_chosen_ids_that_escape_or_collide_are_refused(upload_id: str) -> None:
    assert not is_safe_upload_id(upload_id)
    with pytest.raises(InvalidHookResponse):
        validate_response(HookResponse(change_id=upload_id))


@pytest.mark.parametrize("upload_id", ["user-1/2024/file.bin", "a~b_c.d", "x:y@z", "it's(1)"])
def test_hook_chosen_ids_that_are_fine(upload_id: str) -> None:
    assert is_safe_upload_id(upload_id)
    validate_response(HookResponse(change_id=upload_id))


@pytest.mark.parametrize(
    "response",
    [HookResponse(status=99), HookResponse(status=600), HookResponse(headers={"Bad Name": "x"}),
     HookResponse(headers={"X-A": "line\nbreak"})],
)  # fmt: skip
def test_unsendable_answers_are_invalid(response: HookResponse) -> None:
    with pytest.raises(InvalidHookResponse):
        validate_response(response)


def test_hook_error_carries_a_status() -> None:
    assert HookError("x").status == 500
    assert HookError("x", 504).status == 504


def test_event_lists() -> None:
    assert parse_events("") == frozenset(TUSD_EVENTS)
    assert HookEvent.PRE_ACCESS not in parse_events("")
    assert parse_events("pre-create, post-finish") == {HookEvent.PRE_CREATE, HookEvent.POST_FINISH}
    assert parse_events("pre-access") == {HookEvent.PRE_ACCESS}
    with pytest.raises(ValueError, match="unknown hook event"):
        parse_events("pre-create,pre-get")
    assert {"pre-create", "post-create", "post-receive", "post-terminate", "post-finish"} == DEFAULT_EVENTS
    assert {"pre-create", "pre-finish", "pre-terminate", "pre-access"} == BLOCKING_EVENTS


def test_no_hooks() -> None:
    hooks = NoHooks()
    assert not any(hooks.enabled(e) for e in HookEvent)
    info = UploadInfo(id="a")
    assert asyncio.run(hooks.run(HookEvent.PRE_CREATE, info, REQUEST)) == HookResponse()


# -- post-receive pacing --------------------------------------------------------------------------


def test_pacer_lets_the_first_call_through_and_holds_the_next() -> None:
    async def scenario() -> tuple[list[bool], float]:
        pacer = ProgressPacer(0.2)
        start = time.monotonic()
        first = await pacer.turn("u")
        second = await pacer.turn("u")
        return [first, second], time.monotonic() - start

    results, elapsed = asyncio.run(scenario())
    assert results == [True, True]
    assert 0.18 <= elapsed < 3.0  # held for its interval; the upper bound only catches a hang


def test_pacer_keeps_only_the_newest_of_a_burst_and_uploads_are_independent() -> None:
    async def scenario() -> list[bool]:
        pacer = ProgressPacer(0.2)
        assert await pacer.turn("u")
        burst = [asyncio.create_task(pacer.turn("u")) for _ in range(5)]
        other = asyncio.create_task(pacer.turn("v"))
        await asyncio.sleep(0)
        assert other.done() and other.result()  # another upload is not held back
        return list(await asyncio.gather(*burst))

    assert asyncio.run(scenario()) == [False, False, False, False, True]


def test_pacer_interval_zero_never_waits() -> None:
    async def scenario() -> list[bool]:
        pacer = ProgressPacer(0)
        return [await pacer.turn("u") for _ in range(3)]

    assert asyncio.run(scenario()) == [True, True, True]


# -- flags ----------------------------------------------------------------------------------------


def settings(**values: Any) -> dict[str, Any]:
    base = {flag.name.replace("-", "_"): flag.default for flag in HOOK_FLAGS}
    base.update(values)
    return base


def test_hook_flags_have_tusd_names_and_defaults() -> None:
    flags = {flag.name: flag for flag in HOOK_FLAGS}
    assert all(isinstance(f, Flag) for f in HOOK_FLAGS)
    for name in (
        "hooks-dir", "hooks-http", "hooks-http-forward-headers", "hooks-http-retry", "hooks-http-backoff",
        "hooks-http-timeout", "hooks-enabled-events", "progress-hooks-interval",
    ):  # fmt: skip
        assert name in flags
    assert flags["hooks-http-retry"].default == 3 and flags["hooks-http-backoff"].default == 1.0
    assert flags["hooks-enabled-events"].default == "pre-create,post-create,post-receive,post-finish,post-terminate"
    assert flags["progress-hooks-interval"].kind == "duration"


def test_no_hook_flags_no_hooks() -> None:
    assert hooks_from_settings(settings()) is None
    assert hooks_from_settings({}) is None


def test_hooks_dir_flag(tmp_path: Path) -> None:
    hooks = hooks_from_settings(
        settings(hooks_dir=str(tmp_path), hooks_enabled_events="pre-create,pre-access", progress_hooks_interval=2.5)
    )
    assert isinstance(hooks, FileHooks)
    assert hooks.directory == str(tmp_path) and hooks.events == {"pre-create", "pre-access"}
    assert hooks.progress_interval == 2.5 and hooks.timeout == 30.0


def test_hooks_http_flags() -> None:
    hooks = hooks_from_settings(
        settings(
            hooks_http="http://127.0.0.1:9/hook",
            hooks_http_forward_headers="Authorization, Cookie",
            hooks_http_retry=5,
            hooks_http_backoff=0.5,
            hooks_http_timeout=2.0,
        )
    )
    assert isinstance(hooks, HttpHooks)
    assert hooks.forward_headers == ("Authorization", "Cookie")
    assert (hooks.retries, hooks.backoff, hooks.http_timeout) == (5, 0.5, 2.0)
    assert hooks.events == DEFAULT_EVENTS


def test_hooks_grpc_flags() -> None:
    from pytusd.hooks.grpc import GrpcHooks

    flags = {flag.name: flag for flag in HOOK_FLAGS}
    assert flags["hooks-grpc-retry"].default == 3 and flags["hooks-grpc-backoff"].default == 1.0
    assert flags["hooks-grpc-secure"].kind == "bool"
    hooks = hooks_from_settings(
        settings(hooks_grpc="localhost:8081", hooks_grpc_retry=0, hooks_grpc_forward_headers="Authorization")
    )
    assert isinstance(hooks, GrpcHooks)
    # tusd's -hooks-grpc-retry counts attempts (go-grpc-middleware's WithMax); 0 is one call.
    assert hooks.attempts == 1 and hooks.forward_headers == ("authorization",)


def test_several_transports_chain_in_order(tmp_path: Path) -> None:
    from pytusd.hooks.chain import HookChain
    from pytusd.hooks.grpc import GrpcHooks

    hooks = hooks_from_settings(
        settings(hooks_grpc="localhost:8081", hooks_http="http://127.0.0.1:9/", hooks_dir=str(tmp_path))
    )
    assert isinstance(hooks, HookChain)
    assert [type(t) for t in hooks.transports] == [FileHooks, HttpHooks, GrpcHooks]


@pytest.mark.parametrize(
    "values",
    [
        {"hooks_dir": "/nonexistent/hooks"},
        {"hooks_http": "ftp://x/"},
        {"hooks_grpc": "127.0.0.1:1", "hooks_grpc_secure": True},  # no server certificate
        {"hooks_grpc": "127.0.0.1:1", "hooks_grpc_forward_headers": "X-Data-Bin"},
        {"hooks_grpc": "127.0.0.1:1", "hooks_grpc_retry": -1},
        {"hooks_dir": ".", "hooks_grpc": "127.0.0.1:1", "hooks_grpc_forward_headers": "Bad:Name"},
        {"hooks_http": "http://x/", "hooks_enabled_events": "pre-get"},
        {"hooks_http": "http://x/", "hooks_http_timeout": 0.0},
        {"hooks_http": "http://x/", "hooks_http_forward_headers": "Bad:Name"},
    ],
)
def test_bad_hook_flags_are_errors(values: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        hooks_from_settings(settings(**values))
