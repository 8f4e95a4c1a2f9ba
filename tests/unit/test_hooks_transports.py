"""The three transports on their own: Python callables, hook programs, an HTTP endpoint on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pytusd.hooks import (
    FileHooks,
    HookCall,
    HookError,
    HookEvent,
    HookRejection,
    HookRequest,
    HookResponse,
    HttpHooks,
    PythonHooks,
)
from pytusd.hooks.file import MAX_OUTPUT
from pytusd.info import UploadInfo
from tests.integration.hook_helpers import HookEndpoint, write_program
from tests.support.server import free_port
from tests.support.wait import wait_until

REQUEST = HookRequest(
    "POST", "/files/", "127.0.0.1:5000", {"Authorization": ["Bearer t0k"], "Cookie": ["a=1"], "Host": ["h"]}
)
INFO = UploadInfo(id="up1", size=10, offset=3, metadata={"filename": "a.txt"}, storage={"Path": "/x"})

PRE_CREATE = HookEvent.PRE_CREATE
POST_CREATE = HookEvent.POST_CREATE
POST_FINISH = HookEvent.POST_FINISH
PRE_FINISH = HookEvent.PRE_FINISH
POST_RECEIVE = HookEvent.POST_RECEIVE


def run(hooks: Any, event: HookEvent, info: UploadInfo = INFO) -> HookResponse:
    async def go() -> HookResponse:
        try:
            return await hooks.run(event, info, REQUEST)  # type: ignore[no-any-return]
        finally:
            await hooks.aclose()

    return asyncio.run(go())


def failure(hooks: Any, event: HookEvent, info: UploadInfo = INFO) -> HookError:
    with pytest.raises(HookError) as caught:
        run(hooks, event, info)
    message = str(caught.value)
    assert message and "\n" not in message
    return caught.value


# -- Python callables -----------------------------------------------------------------------------


def test_python_sync_and_async_callables_get_the_call_and_answer() -> None:
    seen: list[tuple[str, HookCall, str]] = []

    def pre_create(call: HookCall) -> HookResponse:
        seen.append(("sync", call, threading.current_thread().name))
        return HookResponse(change_id="named/" + call.upload.metadata["filename"])

    async def post_create(call: HookCall) -> None:
        seen.append(("async", call, threading.current_thread().name))

    hooks = PythonHooks(pre_create=pre_create, post_create=post_create)
    assert hooks.enabled(PRE_CREATE) and hooks.enabled(POST_CREATE) and not hooks.enabled(POST_FINISH)
    assert run(hooks, PRE_CREATE).change_id == "named/a.txt"
    assert run(hooks, POST_CREATE) == HookResponse()
    (_, sync_call, sync_thread), (_, async_call, async_thread) = seen
    assert sync_call.event == PRE_CREATE and sync_call.upload.id == "up1" and sync_call.request is REQUEST
    assert sync_thread != threading.main_thread().name  # sync hooks run in a worker thread
    assert async_thread == threading.main_thread().name
    assert async_call.to_json()["Type"] == "post-create"


def test_python_hook_sees_a_copy_of_the_upload() -> None:
    def pre_create(call: HookCall) -> None:
        call.upload.metadata["injected"] = "x"
        call.upload.storage.clear()

    info = UploadInfo(id="a", metadata={"k": "v"}, storage={"Path": "p"})
    run(PythonHooks(pre_create=pre_create), PRE_CREATE, info)
    assert info.metadata == {"k": "v"} and info.storage == {"Path": "p"}


def test_python_hook_may_answer_tusd_json_or_raise_a_rejection() -> None:
    def pre_access(call: HookCall) -> None:
        raise HookRejection(401, "who?", {"WWW-Authenticate": "Bearer"})

    hooks = PythonHooks(
        {
            "pre-create": lambda call: {"RejectUpload": True, "HTTPResponse": {"StatusCode": 413, "Body": "big"}},
            "pre-access": pre_access,
        }
    )
    answer = run(hooks, PRE_CREATE)
    assert answer.reject_upload and answer.status == 413 and answer.body == "big"
    denied = run(hooks, HookEvent.PRE_ACCESS)
    assert denied.reject_access and denied.status == 401 and denied.headers == {"WWW-Authenticate": "Bearer"}


def test_python_hook_decorator_and_callable_objects() -> None:
    hooks = PythonHooks()
    assert not hooks.enabled(PRE_FINISH)

    class Finisher:
        async def __call__(self, call: HookCall) -> HookResponse:
            return HookResponse(headers={"X-Done": call.upload.id})

    hooks.on("pre-finish")(Finisher())
    assert hooks.enabled(PRE_FINISH)
    assert run(hooks, PRE_FINISH).headers == {"X-Done": "up1"}


def test_python_blocking_hook_exception_is_a_500_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    def pre_create(call: HookCall) -> None:
        raise ValueError("database password is hunter2")

    error = failure(PythonHooks(pre_create=pre_create), PRE_CREATE)
    assert error.status == 500
    assert "ValueError" in str(error) and "hunter2" not in str(error)
    assert "hunter2" in caplog.text  # the traceback is in the server's log


def test_python_non_blocking_hook_failure_is_logged_only(caplog: pytest.LogCaptureFixture) -> None:
    async def post_finish(call: HookCall) -> None:
        raise RuntimeError("disk full")

    with caplog.at_level(logging.WARNING):
        assert run(PythonHooks(post_finish=post_finish), POST_FINISH) == HookResponse()
    assert "post-finish" in caplog.text and "disk full" in caplog.text


def test_python_hook_timeout_applies_to_blocking_hooks_only() -> None:
    async def slow(call: HookCall) -> None:
        await asyncio.sleep(0.5)

    async def stuck(call: HookCall) -> None:
        await asyncio.sleep(30)

    start = time.monotonic()
    error = failure(PythonHooks(pre_finish=stuck, timeout=0.1), PRE_FINISH)
    assert error.status == 504 and "timed out" in str(error)
    assert time.monotonic() - start < 10  # cut off, not waited for
    assert run(PythonHooks(post_finish=slow, timeout=0.1), POST_FINISH) == HookResponse()  # ran to its end


@pytest.mark.parametrize("bad", [42, HookResponse(status=1000)])
def test_python_hook_invalid_answers_fail_blocking_hooks(bad: Any) -> None:
    error = failure(PythonHooks(pre_create=lambda call: bad), PRE_CREATE)
    assert error.status == 500 and "invalid response" in str(error)


def test_an_invalid_chosen_id_is_a_client_error() -> None:
    # The hook would answer a retry the same way: a 4xx, which tus clients do not retry.
    error = failure(PythonHooks(pre_create=lambda call: HookResponse(change_id="../escape")), PRE_CREATE)
    assert error.status == 400 and "not a valid upload ID" in str(error)


def test_python_hooks_reject_non_callables() -> None:
    with pytest.raises(TypeError):
        PythonHooks(pre_create="not callable")  # type: ignore[arg-type]


def test_python_post_receive_is_paced() -> None:
    calls: list[int] = []

    async def post_receive(call: HookCall) -> None:
        calls.append(call.upload.offset)

    hooks = PythonHooks(post_receive=post_receive, progress_interval=0.2)

    async def go() -> None:
        await hooks.run(POST_RECEIVE, UploadInfo(id="u", size=9, offset=1), REQUEST)
        burst = [hooks.run(POST_RECEIVE, UploadInfo(id="u", size=9, offset=n), REQUEST) for n in (2, 3, 4)]
        await asyncio.gather(*burst)

    asyncio.run(go())
    assert calls == [1, 4]


# -- hook programs --------------------------------------------------------------------------------

ECHO = f"""#!{sys.executable}
import json, os, sys
document = json.load(sys.stdin)
env = {{k: os.environ.get(k) for k in ("TUS_ID", "TUS_OFFSET", "TUS_SIZE", "HOME")}}
open("seen.json", "w").write(json.dumps({{"input": document, "cwd": os.getcwd(), "env": env}}))
answer = {{"HTTPResponse": {{"StatusCode": 403, "Body": "no", "Header": {{"X-Hook": "file"}}}}, "RejectUpload": True}}
print(json.dumps(answer))
"""


def test_program_gets_json_and_env_and_answers_on_stdout(tmp_path: Path) -> None:
    write_program(tmp_path / "pre-finish", ECHO)
    hooks = FileHooks(tmp_path, ["pre-finish"])
    assert hooks.enabled(PRE_FINISH) and not hooks.enabled(PRE_CREATE)
    answer = run(hooks, PRE_FINISH)
    assert answer == HookResponse(status=403, body="no", headers={"X-Hook": "file"}, reject_upload=True)
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["cwd"] == str(tmp_path)
    assert seen["env"] == {"TUS_ID": "up1", "TUS_OFFSET": "3", "TUS_SIZE": "10", "HOME": os.environ.get("HOME")}
    assert seen["input"]["Type"] == "pre-finish"
    assert seen["input"]["Event"]["HTTPRequest"]["Header"]["Authorization"] == ["Bearer t0k"]


def test_program_in_pre_create_sees_an_empty_id(tmp_path: Path) -> None:
    write_program(tmp_path / "pre-create", ECHO)
    run(FileHooks(tmp_path, ["pre-create"]), PRE_CREATE)
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["env"]["TUS_ID"] == "" and seen["input"]["Event"]["Upload"]["ID"] == ""


def test_missing_programs_and_disabled_events_are_no_hooks(tmp_path: Path) -> None:
    write_program(tmp_path / "pre-finish", ECHO)
    hooks = FileHooks(tmp_path)  # tusd's default events: pre-finish is not one of them
    assert not hooks.enabled(PRE_FINISH) and not hooks.enabled(PRE_CREATE)


def test_program_silent_or_not_reading_stdin_is_an_empty_answer(tmp_path: Path) -> None:
    write_program(tmp_path / "pre-create", "#!/bin/sh\nexit 0\n")
    write_program(tmp_path / "post-create", "#!/bin/sh\necho '   '\n")
    hooks = FileHooks(tmp_path, ["pre-create", "post-create"])
    assert run(hooks, PRE_CREATE) == HookResponse()
    assert run(hooks, POST_CREATE) == HookResponse()


def test_program_exit_status_fails_blocking_hooks(tmp_path: Path) -> None:
    write_program(tmp_path / "pre-create", "#!/bin/sh\necho 'secret stuff'\nexit 3\n")
    error = failure(FileHooks(tmp_path, ["pre-create"]), PRE_CREATE)
    assert error.status == 500 and "exited with status 3" in str(error) and "secret" not in str(error)


def test_program_crash_by_signal(tmp_path: Path) -> None:
    write_program(tmp_path / "pre-create", "#!/bin/sh\nkill -SEGV $$\n")
    error = failure(FileHooks(tmp_path, ["pre-create"]), PRE_CREATE)
    assert "killed by signal 11" in str(error)


def test_program_garbage_fails_blocking_hooks(tmp_path: Path) -> None:
    write_program(tmp_path / "pre-create", "#!/bin/sh\necho 'this is not json'\n")
    write_program(tmp_path / "pre-finish", '#!/bin/sh\necho \'{"HTTPResponse": {"StatusCode": "400"}}\'\n')
    hooks = FileHooks(tmp_path, ["pre-create", "pre-finish"])
    assert "not JSON" in str(failure(hooks, PRE_CREATE))
    assert "StatusCode must be an integer" in str(failure(hooks, PRE_FINISH))


def test_program_flooding_stdout_is_refused(tmp_path: Path) -> None:
    write_program(tmp_path / "pre-create", f"#!/bin/sh\nhead -c {MAX_OUTPUT + 10} /dev/zero\n")
    assert "larger than" in str(failure(FileHooks(tmp_path, ["pre-create"]), PRE_CREATE))


def test_program_not_executable_is_a_failure_not_silence(tmp_path: Path) -> None:
    (tmp_path / "pre-create").write_text("#!/bin/sh\nexit 0\n")
    hooks = FileHooks(tmp_path, ["pre-create"])
    assert hooks.enabled(PRE_CREATE)
    assert "not executable" in str(failure(hooks, PRE_CREATE))


def test_program_non_blocking_failure_is_logged_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_program(tmp_path / "post-finish", "#!/bin/sh\nexit 1\n")
    with caplog.at_level(logging.WARNING):
        assert run(FileHooks(tmp_path, ["post-finish"]), POST_FINISH) == HookResponse()
    assert "post-finish" in caplog.text and "exited with status 1" in caplog.text


def test_program_timeout_kills_it_and_its_children(tmp_path: Path) -> None:
    write_program(tmp_path / "pre-create", "#!/bin/sh\nsleep 30 &\necho $! > child.pid\necho $$ > self.pid\nwait\n")
    start = time.monotonic()
    error = failure(FileHooks(tmp_path, ["pre-create"], timeout=0.5), PRE_CREATE)
    assert error.status == 504 and "timed out after 0.5s" in str(error)
    assert time.monotonic() - start < 5
    for name in ("self.pid", "child.pid"):
        pid = int((tmp_path / name).read_text())
        assert _gone(pid), f"{name} still running"


def test_program_post_finish_has_no_time_limit(tmp_path: Path) -> None:
    write_program(tmp_path / "post-finish", "#!/bin/sh\nsleep 0.6\necho done > finished\n")
    run(FileHooks(tmp_path, ["post-finish"], timeout=0.2), POST_FINISH)
    assert (tmp_path / "finished").exists()


def test_cancelled_program_is_killed(tmp_path: Path) -> None:
    write_program(tmp_path / "post-receive", "#!/bin/sh\necho $$ > self.pid\nexec sleep 30\n")
    hooks = FileHooks(tmp_path, ["post-receive"], timeout=None)

    async def go() -> None:
        task = asyncio.create_task(hooks.run(POST_RECEIVE, INFO, REQUEST))
        for _ in range(200):
            if (tmp_path / "self.pid").exists():
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert _gone(int((tmp_path / "self.pid").read_text()))


def test_hooks_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        FileHooks(tmp_path / "missing")


def _gone(pid: int) -> bool:
    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie child of ours counts as gone
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(")")[-1].split()[0] == "Z"
        except OSError:
            return True

    return wait_until(gone, timeout=5, message=f"process {pid} to end")


# -- HTTP endpoint --------------------------------------------------------------------------------


def http_hooks(endpoint: HookEndpoint, **kwargs: Any) -> HttpHooks:
    kwargs.setdefault("backoff", 0.05)
    return HttpHooks(endpoint.url, [e.value for e in HookEvent], **kwargs)


def test_http_posts_tusd_json_and_forwards_headers() -> None:
    endpoint = HookEndpoint(plans={"pre-create": {"response": {"ChangeFileInfo": {"ID": "chosen"}}}})
    with endpoint.running():
        answer = run(http_hooks(endpoint, forward_headers=["authorization", "X-Missing"]), PRE_CREATE)
    assert answer.change_id == "chosen"
    (call,) = endpoint.calls
    assert call.type == "pre-create"
    assert call.document["Event"]["HTTPRequest"]["Header"]["Cookie"] == ["a=1"]
    headers = {name.lower(): value for name, value in call.headers.items()}
    assert headers["content-type"] == "application/json"
    assert call.headers["authorization"] == "Bearer t0k"  # sent under the name as configured
    assert "cookie" not in headers and "x-missing" not in headers


def test_http_retries_5xx_with_backoff_then_succeeds() -> None:
    endpoint = HookEndpoint(plans={"pre-finish": {"fail_times": 2, "response": {"HTTPResponse": {"StatusCode": 201}}}})
    with endpoint.running():
        start = time.monotonic()
        answer = run(http_hooks(endpoint, retries=3, backoff=0.2), PRE_FINISH)
        elapsed = time.monotonic() - start
    assert answer.status == 201
    assert len(endpoint.calls) == 3
    assert elapsed >= 0.4


def test_http_gives_up_after_the_retries() -> None:
    endpoint = HookEndpoint(plans={"pre-finish": {"status": 503, "body": "down"}})
    with endpoint.running():
        error = failure(http_hooks(endpoint, retries=2), PRE_FINISH)
    assert error.status == 502 and "answered 503" in str(error)
    assert len(endpoint.calls) == 3


def test_http_4xx_is_a_failure_at_once() -> None:
    endpoint = HookEndpoint(plans={"pre-create": {"status": 404, "body": "no such hook"}})
    with endpoint.running():
        error = failure(http_hooks(endpoint, retries=3), PRE_CREATE)
    assert error.status == 502 and "answered 404" in str(error)
    assert len(endpoint.calls) == 1


def test_http_unreachable_endpoint() -> None:
    hooks = HttpHooks(f"http://127.0.0.1:{free_port()}/", ["pre-create"], retries=1, backoff=0.01)
    error = failure(hooks, PRE_CREATE)
    assert error.status == 502 and "unreachable" in str(error)


def test_http_timeout_is_a_504() -> None:
    endpoint = HookEndpoint(plans={"pre-create": {"sleep": 1.0}})
    with endpoint.running():
        error = failure(http_hooks(endpoint, retries=0, timeout=0.2), PRE_CREATE)
    assert error.status == 504 and "timed out" in str(error)


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        ({"status": 200, "body": "<html>oops</html>"}, "not JSON"),
        ({"status": 200, "body": "[1, 2]"}, "must be a JSON object"),
        ({"response": {"RejectUpload": True, "HTTPResponse": {"Body": "x" * 6000}}}, "larger than"),
    ],
)
def test_http_garbage_fails_blocking_hooks(plan: dict[str, Any], reason: str) -> None:
    endpoint = HookEndpoint(plans={"pre-create": plan})
    with endpoint.running():
        error = failure(http_hooks(endpoint), PRE_CREATE)
    assert error.status == 502 and reason in str(error)


def test_http_empty_body_and_non_blocking_failures() -> None:
    endpoint = HookEndpoint(plans={"pre-create": {"status": 204}, "post-finish": {"status": 500}})
    with endpoint.running():
        assert run(http_hooks(endpoint), PRE_CREATE) == HookResponse()
        assert run(http_hooks(endpoint, retries=0), POST_FINISH) == HookResponse()


def test_http_endpoint_must_be_a_url() -> None:
    with pytest.raises(ValueError):
        HttpHooks("localhost:8081/hooks")
