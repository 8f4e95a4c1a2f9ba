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
            proc = await asyncio.create_subprocess_exec(
                path,
                stdin=stdin_r,
                stdout=stdout_w,
                stderr=None,  # the server's stderr, as tusd does
                cwd=self.directory,
                env=env,
                start_new_session=True,  # its own process group: a timeout kills its children too
            )
        except OSError as exc:
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            if isinstance(exc, FileNotFoundError):
                return HookResponse()  # removed since enabled() looked: no hook
            raise HookError(f"{event} hook program could not be started ({_os_reason(exc)})", 500) from None
        finally:
            for fd in (stdin_r, stdout_w):
                os.close(fd)
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
    """Write ``data`` to the program's stdin and read its stdout to the end; owns both descriptors.

    A program that exits without reading stdin is fine (tusd ignores that too): the write end
    just fails quietly.
    """
    loop = asyncio.get_running_loop()
    read_file = os.fdopen(stdout_fd, "rb", buffering=0)
    write_file = os.fdopen(stdin_fd, "wb", buffering=0)
    reader = asyncio.StreamReader()
    read_transport: asyncio.BaseTransport | None = None
    write_transport: asyncio.WriteTransport | None = None
    try:
        read_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), read_file)
        write_transport, _ = await loop.connect_write_pipe(asyncio.Protocol, write_file)
        write_transport.write(data)
        write_transport.close()  # flushes, then closes: the program sees the end of its input
        chunks: list[bytes] = []
        size = 0
        while chunk := await reader.read(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise InvalidHookResponse(f"stdout is larger than {MAX_OUTPUT} bytes")
        return b"".join(chunks)
    finally:
        if read_transport is not None:
            read_transport.close()
        else:
            read_file.close()
        if write_transport is None:
            write_file.close()
        elif not write_transport.is_closing():
            write_transport.abort()


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
