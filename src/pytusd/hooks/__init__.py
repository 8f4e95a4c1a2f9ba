"""Hooks: let an application authorize, rename, reject and post-process uploads.

Three transports speak tusd's hook format: :class:`PythonHooks` (callables, for applications that
mount pytusd), :class:`HttpHooks` (JSON POSTed to a URL) and :class:`FileHooks` (programs in a
directory). See docs/hooks.md.
"""

from pytusd.hooks.base import (
    BLOCKING_EVENTS,
    DEFAULT_EVENTS,
    HookError,
    HookEvent,
    HookRequest,
    HookResponse,
    Hooks,
    InvalidHookResponse,
    NoHooks,
    hook_input,
)
from pytusd.hooks.file import FileHooks
from pytusd.hooks.http import HttpHooks
from pytusd.hooks.python import HookCall, HookFunction, HookRejection, HookResult, PythonHooks
from pytusd.hooks.runner import HookRunner, ProgressPacer

__all__ = [
    "BLOCKING_EVENTS",
    "DEFAULT_EVENTS",
    "FileHooks",
    "HookCall",
    "HookError",
    "HookEvent",
    "HookFunction",
    "HookRejection",
    "HookRequest",
    "HookResponse",
    "HookResult",
    "HookRunner",
    "Hooks",
    "HttpHooks",
    "InvalidHookResponse",
    "NoHooks",
    "ProgressPacer",
    "PythonHooks",
    "hook_input",
]
