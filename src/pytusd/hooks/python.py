"""Hooks as Python functions, for applications that mount pytusd (FastAPI, Starlette, ...).

>>> async def pre_create(call: HookCall) -> HookResponse | None:
...     if call.request.header("Authorization") != "Bearer secret":
...         return HookResponse.reject(401, "who are you?")
...     return HookResponse(change_id=f"uploads/{call.upload.id}")
>>> app = TusApp(FileStore("./data"), hooks=PythonHooks(pre_create=pre_create))

A hook is a sync or async callable taking a :class:`HookCall` and returning a
:class:`HookResponse`, a dict in tusd's JSON form, or None (nothing to say). It may also raise
:class:`HookRejection` to refuse, like FastAPI's ``HTTPException``. Sync functions run in a
worker thread (as FastAPI runs sync endpoints), so blocking I/O in them does not stall uploads.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

from pytusd.hooks.base import (
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


@dataclass(frozen=True, slots=True)
class HookCall:
    """One hook invocation: the event, the upload (a copy: change it through the answer) and the request.

    In pre-create, ``upload.id`` is the ID pytusd would give the upload (tusd's JSON shows "" there);
    ``upload.storage`` is still empty.
    """

    event: HookEvent
    upload: UploadInfo
    request: HookRequest

    def to_json(self) -> dict[str, Any]:
        """The same document an HTTP hook or a hook program receives (tusd's format)."""
        return hook_input(self.event, self.upload, self.request)


HookResult: TypeAlias = HookResponse | Mapping[str, Any] | None
#: A hook: ``def hook(call: HookCall) -> HookResult`` or ``async def hook(call: HookCall) -> HookResult``.
HookFunction: TypeAlias = Callable[[HookCall], HookResult | Awaitable[HookResult]]


class HookRejection(Exception):
    """Raise in a hook to refuse what it guards, as if it had returned :meth:`HookResponse.reject`."""

    def __init__(self, status: int = 403, body: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(body or f"rejected with {status}")
        self.response = HookResponse.reject(status, body, headers)


class PythonHooks(HookRunner):
    """Python callables for some or all events; only events with a callable are enabled.

    ``timeout``: seconds a pre-* or post-receive hook may take before the request fails with 504
    (None: no limit). ``progress_interval``: post-receive at most this often per upload.
    """

    kind = "Python hook"
    invalid_status = 500

    def __init__(
        self,
        handlers: Mapping[HookEvent | str, HookFunction] | None = None,
        *,
        pre_create: HookFunction | None = None,
        post_create: HookFunction | None = None,
        post_receive: HookFunction | None = None,
        pre_finish: HookFunction | None = None,
        post_finish: HookFunction | None = None,
        pre_terminate: HookFunction | None = None,
        post_terminate: HookFunction | None = None,
        pre_access: HookFunction | None = None,
        progress_interval: float = 1.0,
        timeout: float | None = None,
    ) -> None:
        functions: dict[HookEvent, HookFunction] = {HookEvent(k): v for k, v in (handlers or {}).items()}
        named = {
            HookEvent.PRE_CREATE: pre_create,
            HookEvent.POST_CREATE: post_create,
            HookEvent.POST_RECEIVE: post_receive,
            HookEvent.PRE_FINISH: pre_finish,
            HookEvent.POST_FINISH: post_finish,
            HookEvent.PRE_TERMINATE: pre_terminate,
            HookEvent.POST_TERMINATE: post_terminate,
            HookEvent.PRE_ACCESS: pre_access,
        }
        for event, function in named.items():
            if function is not None:
                functions[event] = function
        for event, function in functions.items():
            if not callable(function):
                raise TypeError(f"the {event} hook must be callable")
        self.functions = functions
        super().__init__(functions, progress_interval=progress_interval, timeout=timeout)

    def on(self, event: HookEvent | str) -> Callable[[HookFunction], HookFunction]:
        """Decorator form: ``@hooks.on("post-finish")``."""

        def register(function: HookFunction) -> HookFunction:
            key = HookEvent(event)
            self.functions[key] = function
            self.events = self.events | {key}
            return function

        return register

    async def invoke(self, event: HookEvent, info: UploadInfo, request: HookRequest) -> HookResponse:
        function = self.functions[event]
        upload = replace(
            info,
            metadata=dict(info.metadata),
            storage=dict(info.storage),
            partial_uploads=list(info.partial_uploads),
            pending_finals=list(info.pending_finals),
        )
        call = HookCall(event, upload, request)
        try:
            if _is_async(function):
                result = await function(call)  # type: ignore[misc]
            else:
                result = await asyncio.to_thread(function, call)
                if inspect.isawaitable(result):  # a sync wrapper around a coroutine function
                    result = await result
        except HookRejection as rejection:
            return rejection.response
        except (HookError, asyncio.CancelledError):
            raise
        except Exception as exc:
            logger.exception("%s hook %s raised", event, _name(function))
            raise HookError(f"{event} hook raised {type(exc).__name__}", 500) from exc
        return _response(result)


def _is_async(function: Any) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    # An object whose __call__ is a coroutine function.
    return not inspect.isroutine(function) and inspect.iscoroutinefunction(type(function).__call__)


def _name(function: Any) -> str:
    return str(getattr(function, "__qualname__", None) or type(function).__name__)


def _response(result: Any) -> HookResponse:
    if result is None:
        return HookResponse()
    if isinstance(result, HookResponse):
        return result
    if isinstance(result, Mapping):
        return HookResponse.from_json(result)
    raise InvalidHookResponse(f"expected a HookResponse, a dict or None, got {type(result).__name__}")
