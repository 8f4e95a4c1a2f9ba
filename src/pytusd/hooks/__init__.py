"""Hooks: let an application authorize, rename, reject and post-process uploads.

Four transports speak tusd's hook format: :class:`PythonHooks` (callables, for applications that
mount pytusd), :class:`FileHooks` (programs in a directory), :class:`HttpHooks` (JSON POSTed to a
URL) and :class:`GrpcHooks` (tusd's gRPC service). :class:`HookChain` runs several. See docs/hooks.md.
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
from pytusd.hooks.chain import HookChain
from pytusd.hooks.file import FileHooks
from pytusd.hooks.grpc import GrpcHooks
from pytusd.hooks.http import HttpHooks
from pytusd.hooks.python import HookCall, HookFunction, HookRejection, HookResult, PythonHooks
from pytusd.hooks.runner import HookRunner, ProgressPacer

__all__ = [
    "BLOCKING_EVENTS",
    "DEFAULT_EVENTS",
    "FileHooks",
    "GrpcHooks",
    "HookCall",
    "HookChain",
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
