"""A hook program cancelled at any await point ends with CancelledError, never another exception.

The handler cancels its post-receive watcher when a body ends and waits for it; the watcher logs
and skips hook failures (``except Exception``). A cancellation that comes out of ``FileHooks`` as
some other exception is therefore swallowed: the watcher goes on polling and the PATCH is never
answered. Under uvloop, a cancellation inside ``loop.connect_read_pipe`` did exactly that: uvloop
closes the pipe's descriptor itself, and closing the file object afterwards raised
``OSError(EBADF)`` in place of the CancelledError.

The test cancels a hook run at its first suspension, then at its second, and so on until a run
completes, on the loop the server uses (uvloop) and on asyncio's: every await point on the way is
hit, whatever the timing.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine, Generator
from pathlib import Path
from typing import Any

import pytest

from pytusd.hooks import FileHooks
from pytusd.hooks.base import HookEvent, HookRequest, HookResponse, hook_input
from pytusd.info import UploadInfo
from tests.integration.hook_helpers import write_program

REQUEST = HookRequest("PATCH", "/files/up1", "127.0.0.1:5000", {"Host": ["h"]})
INFO = UploadInfo(id="up1", size=10, offset=3, metadata={"filename": "a.txt"})
#: Far more suspensions than one run of the program below has.
MAX_SUSPENSIONS = 200
#: Bounds a run that should take milliseconds (a hang must fail the test, not block it).
RUN_TIMEOUT = 10.0

LOOPS = ["asyncio"]
try:
    import uvloop

    LOOPS.append("uvloop")
except ImportError:  # pragma: no cover - uvloop is a dependency everywhere but Windows
    uvloop = None  # type: ignore[assignment]


def run_on(loop_name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if loop_name == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())


class CancelledAt:
    """Awaits ``coro`` and cancels the awaiting task at the ``n``-th time ``coro`` suspends (from 0).

    The cancel is requested just before the task sees what ``coro`` waits for, so it lands on
    exactly that await, as a ``Task.cancel()`` from elsewhere would.
    """

    def __init__(self, coro: Coroutine[Any, Any, Any], n: int) -> None:
        self.coro, self.n, self.suspensions = coro, n, 0

    def __await__(self) -> Generator[Any, Any, Any]:
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                waited = self.coro.throw(error) if error is not None else self.coro.send(value)
            except StopIteration as stop:
                return stop.value
            if self.suspensions == self.n:
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
            self.suspensions += 1
            try:
                value, error = (yield waited), None
            except BaseException as exc:  # every exception goes on into coro (a cancellation too)
                value, error = None, exc


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()


@pytest.mark.parametrize("loop_name", LOOPS)
@pytest.mark.parametrize("event", [HookEvent.POST_RECEIVE, HookEvent.PRE_CREATE, HookEvent.POST_FINISH])
def test_a_cancelled_program_run_raises_cancelled_error(tmp_path: Path, loop_name: str, event: HookEvent) -> None:
    write_program(tmp_path / str(event), "#!/bin/sh\ncat > /dev/null\necho '{}'\n")
    # progress_interval=0: post-receive is not paced, so every run starts a program.
    hooks = FileHooks(tmp_path, [event], progress_interval=0, timeout=RUN_TIMEOUT)
    cancelled_at: list[int] = []

    async def one(n: int) -> bool:
        wrapped = CancelledAt(hooks.run(event, INFO, REQUEST), n)

        async def body() -> HookResponse:
            return await wrapped  # type: ignore[no-any-return]

        task = asyncio.get_running_loop().create_task(body())
        done, _ = await asyncio.wait({task}, timeout=RUN_TIMEOUT)
        assert done, f"a run cancelled at suspension {n} did not end"
        if task.cancelled():
            cancelled_at.append(n)
            return True
        # Anything but a cancellation or an answer (OSError, say) is the bug.
        assert task.exception() is None, f"cancelled at suspension {n}: {task.exception()!r}"
        assert task.result() == HookResponse()
        assert wrapped.suspensions <= n, "cancelled, yet it answered"
        return False

    async def main() -> None:
        before = open_fds()
        for n in range(MAX_SUSPENSIONS):
            if not await one(n):
                break
        else:
            pytest.fail(f"no run completed within {MAX_SUSPENSIONS} suspensions")
        # Every descriptor a run opened is closed again (and only once: else EBADF above).
        assert open_fds() <= before

    run_on(loop_name, main)
    assert cancelled_at == list(range(len(cancelled_at))) and len(cancelled_at) >= 2


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_program_that_does_not_read_its_input_is_an_empty_answer(tmp_path: Path, loop_name: str) -> None:
    # More input than a pipe holds, and a program that never reads it.
    _answers_nothing_to_big_input(tmp_path, loop_name, "#!/bin/sh\nexit 0\n")


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_program_may_answer_before_it_read_all_its_input(tmp_path: Path, loop_name: str) -> None:
    # It answers first (more than a pipe holds), then reads: neither side may wait for the other.
    program = "#!/bin/sh\nhead -c 200000 /dev/zero | tr '\\0' ' '\necho '{}'\ncat > /dev/null\n"
    _answers_nothing_to_big_input(tmp_path, loop_name, program)


def _answers_nothing_to_big_input(tmp_path: Path, loop_name: str, program: str) -> None:
    """``program`` as post-create, given 1 MiB of metadata: its run ends with an empty answer."""
    write_program(tmp_path / "post-create", program)
    hooks = FileHooks(tmp_path, ["post-create"])
    info = UploadInfo(id="up1", size=10, offset=3, metadata={"big": "x" * (1 << 20)})

    async def main() -> None:
        async with asyncio.timeout(RUN_TIMEOUT):
            assert await hooks.run(HookEvent.POST_CREATE, info, REQUEST) == HookResponse()

    run_on(loop_name, main)


@pytest.mark.parametrize("loop_name", LOOPS)
def test_a_program_gets_all_its_input_even_after_closing_its_stdout(tmp_path: Path, loop_name: str) -> None:
    # As with tusd (Go's exec): the input is written to its end, not cut when stdout ends first.
    write_program(tmp_path / "post-create", "#!/bin/sh\nexec 1>&-\nsleep 0.1\nwc -c > received\n")
    hooks = FileHooks(tmp_path, ["post-create"])
    info = UploadInfo(id="up1", size=10, offset=3, metadata={"big": "x" * (1 << 20)})
    document = json.dumps(hook_input(HookEvent.POST_CREATE, info, REQUEST)).encode()

    async def main() -> None:
        async with asyncio.timeout(RUN_TIMEOUT):
            assert await hooks.run(HookEvent.POST_CREATE, info, REQUEST) == HookResponse()

    run_on(loop_name, main)
    assert int((tmp_path / "received").read_text()) == len(document)
