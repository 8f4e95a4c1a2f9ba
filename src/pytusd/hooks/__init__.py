"""Hooks: let an application authorize, rename, reject and post-process uploads."""

from pytusd.hooks.base import HookError, HookEvent, HookRequest, HookResponse, Hooks, NoHooks

__all__ = ["HookError", "HookEvent", "HookRequest", "HookResponse", "Hooks", "NoHooks"]
