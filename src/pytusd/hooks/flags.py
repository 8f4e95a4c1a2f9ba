"""The hook flags of the ``pytusd`` command (tusd's names and defaults) and building hooks from them."""

from __future__ import annotations

import re
from typing import Any

from pytusd.flags import Flag
from pytusd.hooks.base import DEFAULT_EVENTS, TUSD_EVENTS, Hooks, parse_events
from pytusd.hooks.http import DEFAULT_SIZE_LIMIT

_DEFAULT_EVENTS_TEXT = ",".join(e.value for e in TUSD_EVENTS if e in DEFAULT_EVENTS)

HOOK_FLAGS: tuple[Flag, ...] = (
    Flag("hooks-dir", "str", "", "directory of hook programs named after events (pre-create, post-finish, ...)"),
    Flag("hooks-http", "str", "", "URL that hook events are POSTed to as JSON"),
    Flag(
        "hooks-http-forward-headers", "str", "",
        "comma-separated client request headers to copy onto HTTP hook requests (e.g. Authorization)",
    ),
    Flag("hooks-http-retry", "int", 3, "times to retry an HTTP hook after a network error, timeout or 5xx"),
    Flag("hooks-http-backoff", "duration", 1.0, "wait before each HTTP hook retry"),
    Flag("hooks-http-timeout", "duration", 15.0, "time limit of one HTTP hook request"),
    Flag("hooks-http-size-limit", "size", DEFAULT_SIZE_LIMIT, "largest HTTP hook response body"),
    Flag("hooks-http-skip-verify", "bool", False, "accept any TLS certificate of an https hook endpoint (tests only)"),
    Flag(
        "hooks-file-timeout", "duration", 30.0,
        "time limit of pre-* and post-receive hook programs (0: none; post-create/-finish/-terminate have none)",
    ),
    Flag(
        "hooks-enabled-events", "str", _DEFAULT_EVENTS_TEXT,
        "comma-separated hook events to run ('' = all of tusd's); pre-finish, pre-terminate and pytusd's "
        "pre-access must be named",
    ),
    Flag("progress-hooks-interval", "duration", 1.0, "at most one post-receive hook per upload per this interval"),
)  # fmt: skip

_DEFAULTS = {flag.name.replace("-", "_"): flag.default for flag in HOOK_FLAGS}


def hooks_from_settings(settings: dict[str, Any]) -> Hooks | None:
    """The hooks the flags ask for, or None. Raises ValueError for settings that cannot work.

    Keys are the flag names with ``-`` replaced by ``_``; missing keys take the flag's default.
    """

    def get(key: str) -> Any:
        value = settings.get(key)
        return _DEFAULTS[key] if value is None else value

    directory = str(get("hooks_dir")).strip()
    endpoint = str(get("hooks_http")).strip()
    if not directory and not endpoint:
        return None
    if directory and endpoint:
        raise ValueError("--hooks-dir and --hooks-http cannot be used together (as in tusd: one kind of hooks)")
    events = parse_events(str(get("hooks_enabled_events")))
    interval = float(get("progress_hooks_interval"))
    if interval < 0:
        raise ValueError("--progress-hooks-interval must be >= 0")
    if directory:
        from pytusd.hooks.file import FileHooks

        timeout = float(get("hooks_file_timeout"))
        if timeout < 0:
            raise ValueError("--hooks-file-timeout must be >= 0")
        return FileHooks(directory, events, progress_interval=interval, timeout=timeout or None)
    from pytusd.hooks.http import HttpHooks

    forward = [name for name in re.split(r"[\s,]+", str(get("hooks_http_forward_headers"))) if name]
    return HttpHooks(
        endpoint,
        events,
        forward_headers=forward,
        retries=int(get("hooks_http_retry")),
        backoff=float(get("hooks_http_backoff")),
        timeout=float(get("hooks_http_timeout")),
        size_limit=int(get("hooks_http_size_limit")),
        progress_interval=interval,
        verify=not get("hooks_http_skip_verify"),
    )
