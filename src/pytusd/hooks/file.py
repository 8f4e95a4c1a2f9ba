"""Hook programs in a directory, run exactly as tusd's file hooks (``-hooks-dir``).

For an event, the program named after it (``pre-create``, ``post-finish``, ... without extension)
is executed if it exists:

- working directory: the hooks directory; environment: the server's, plus ``TUS_ID``,
  ``TUS_OFFSET`` and ``TUS_SIZE`` (``TUS_ID`` is empty in pre-create, ``TUS_SIZE`` 0 while the
  length is deferred);
- stdin: the hook request JSON; stderr: the server's stderr (for the program's logging);
- exit code 0: stdout, if not empty, is the hook response JSON; any other exit code is a failure
  (a blocking hook's request fails with 500; otherwise the failure is only logged).

A program that does not exist is no hook (tusd users keep only the ones they need). A program
that exists but cannot be executed is a failure, so a missing ``chmod +x`` is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Iterable

from pytusd.hooks.base import (
    DEFAULT_EVENTS,
    HookError,
    HookEvent,
    HookRequest,
    HookResponse,
    InvalidHookResponse,
    hook_input,
)
from pytusd.hooks.runner import HookRunner
from pytusd.info import UploadInfo

logger = logging.getLogger("pytusd.hooks")

#: Largest hook response read from a program's stdout.
MAX_OUTPUT = 1024 * 1024


class FileHooks(HookRunner):
    """Executables in ``directory`` named after events (tusd's file hooks).

    ``events``: the events to look for programs for (tusd's default: pre-create, post-create,
    post-receive, post-terminate, post-finish). ``timeout``: seconds a pre-* or post-receive
    program may run before it is killed and the request fails with 504; post-create, post-finish
    and post-terminate programs run as long as they need, as in tusd.
    """

    kind = "hook program"
    invalid_status = 500

    def __init__(
        self,
        directory: str | os.PathLike[str],
        events: Iterable[HookEvent | str] = DEFAULT_EVENTS,
        *,
        progress_interval: float = 1.0,
        timeout: float | None = 30.0,
    ) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        if not os.path.isdir(self.directory):
            raise ValueError(f"hooks directory {self.directory} does not exist")
        super().__init__(events, progress_interval=progress_interval, timeout=timeout)

    def path(self, event: HookEvent) -> str:
        return os.path.join(self.directory, str(event))

    def enabled(self, event: HookEvent) -> bool:
        # Checked per call (a stat), so hooks can be added or removed while the server runs.
        return event in self.events and os.path.exists(self.path(event))

    async def invoke(self, event: HookEvent, info: UploadInfo, request: HookRequest) -> HookResponse:
        path = self.path(event)
        document = hook_input(event, info, request)
        env = dict(os.environ)
        env["TUS_ID"] = document["Event"]["Upload"]["ID"]
        env["TUS_OFFSET"] = str(info.offset)
        env["TUS_SIZE"] = str(info.size if info.size is not None else 0)
        # Real pipes, as tusd gives (asyncio's and uvloop's own may be socket pairs, on which the
        # `cat /dev/stdin` of tusd's example hooks fails with ENXIO).
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    path,
                    stdin=stdin_r,
                    stdout=stdout_w,
                    stderr=None,  # the server's stderr, as tusd does
                    cwd=self.directory,
                    env=env,
                    start_new_session=True,  # its own process group: a timeout kills its children too
                )
            finally:
                for fd in (stdin_r, stdout_w):  # the program has its own copies
                    os.close(fd)
        except BaseException as exc:
            # Not started, or cancelled while starting (the loop then kills it): our ends too.
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            if isinstance(exc, FileNotFoundError):
                return HookResponse()  # removed since enabled() looked: no hook
            if isinstance(exc, OSError):
                raise HookError(f"{event} hook program could not be started ({_os_reason(exc)})", 500) from None
            raise
        try:
            output = await _communicate(stdin_w, stdout_r, json.dumps(document).encode())
            code = await proc.wait()
        except BaseException:
            _kill(proc)
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
            raise
        if code != 0:
            excerpt = output[:500].decode("utf-8", "replace").strip()
            logger.warning("%s hook program %s: exit status %s; stdout: %s", event, path, code, excerpt or "(empty)")
            if code < 0:
                raise HookError(f"{event} hook program was killed by signal {-code}", 500)
            raise HookError(f"{event} hook program exited with status {code}", 500)
        if not output.strip():
            return HookResponse()
        try:
            data = json.loads(output)
        except (ValueError, UnicodeDecodeError):
            logger.warning("%s hook program %s printed no JSON: %r", event, path, output[:500])
            raise InvalidHookResponse("stdout is not JSON") from None
        return HookResponse.from_json(data)


async def _communicate(stdin_fd: int, stdout_fd: int, data: bytes) -> bytes:
    """Write ``data`` to the program's stdin and read its stdout to the end, both at once.

    Owns both descriptors and closes each exactly once, however it ends: cancelled included, so a
    cancellation always comes out as CancelledError. (It used the loop's ``connect_*_pipe``
    transports, but uvloop closes the descriptor itself when one is cancelled while connecting,
    and closing the file object after it then raised EBADF in place of the CancelledError, or
    closed a descriptor that meanwhile belonged to someone else.)

    Ends once stdout is at its end and all the input is written, as Go's ``exec`` (tusd) does: a
    program may close its stdout before it reads its input. A program that exits without reading
    stdin is fine (tusd ignores that too): the rest of the input is dropped.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    output = bytearray()
    rest = memoryview(data)
    stdin_open = True
    stdout_ended = False
    watching_stdin = watching_stdout = False

    def close_stdin() -> None:  # the program sees the end of its input
        nonlocal stdin_open, watching_stdin
        if watching_stdin:
            loop.remove_writer(stdin_fd)
            watching_stdin = False
        if stdin_open:
            stdin_open = False
            os.close(stdin_fd)
        if stdout_ended and not done.done():
            done.set_result(None)

    def write_some() -> None:
        nonlocal rest
        try:
            while rest:
                rest = rest[os.write(stdin_fd, rest) :]
        except BlockingIOError:
            return  # the pipe is full: wait until the program reads
        except OSError:
            pass  # EPIPE: the program does not read its input
        close_stdin()

    def finish(error: BaseException | None = None) -> None:
        nonlocal watching_stdout, stdout_ended
        if watching_stdout:
            loop.remove_reader(stdout_fd)
            watching_stdout = False
        stdout_ended = True
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        elif not stdin_open:
            done.set_result(None)

    def read_some() -> None:
        try:
            chunk = os.read(stdout_fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            finish(exc)
            return
        if not chunk:
            finish()
            return
        output.extend(chunk)
        if len(output) > MAX_OUTPUT:
            finish(InvalidHookResponse(f"stdout is larger than {MAX_OUTPUT} bytes"))

    try:
        os.set_blocking(stdin_fd, False)  # our ends only: the program's ends are other open files
        os.set_blocking(stdout_fd, False)
        write_some()  # a hook request usually fits in the pipe at once
        if stdin_open:
            loop.add_writer(stdin_fd, write_some)
            watching_stdin = True
        loop.add_reader(stdout_fd, read_some)
        watching_stdout = True
        await done
        return bytes(output)
    finally:
        if watching_stdout:  # before the descriptor closes: epoll keys on it
            loop.remove_reader(stdout_fd)
        os.close(stdout_fd)
        close_stdin()


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "not executable"
    return exc.strerror or type(exc).__name__
