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
    Flag("hooks-grpc", "str", "", "address (host:port) of a gRPC server implementing tusd's hook service"),
    Flag("hooks-grpc-retry", "int", 3, "attempts of a gRPC hook call on UNAVAILABLE (tusd counts attempts: 0 = 1)"),
    Flag("hooks-grpc-backoff", "duration", 1.0, "wait before each gRPC hook retry"),
    Flag("hooks-grpc-timeout", "duration", 15.0, "time limit of one gRPC hook call (pytusd's; 0: none, as tusd)"),
    Flag("hooks-grpc-secure", "bool", False, "connect to the gRPC hook server with TLS"),
    Flag("hooks-grpc-server-tls-certificate", "str", "", "PEM file with the gRPC hook server's certificate (or CA)"),
    Flag("hooks-grpc-client-tls-certificate", "str", "", "PEM file with the client certificate for mutual TLS"),
    Flag("hooks-grpc-client-tls-key", "str", "", "PEM file with the client key for mutual TLS"),
    Flag(
        "hooks-grpc-forward-headers", "str", "",
        "comma-separated client request headers to send as gRPC metadata (e.g. Authorization)",
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
    grpc_endpoint = str(get("hooks_grpc")).strip()
    if not directory and not endpoint and not grpc_endpoint:
        return None
    events = parse_events(str(get("hooks_enabled_events")))
    interval = float(get("progress_hooks_interval"))
    if interval < 0:
        raise ValueError("--progress-hooks-interval must be >= 0")
    # Several transports run in a fixed order: file, HTTP, gRPC (see pytusd.hooks.chain).
    transports: list[Hooks] = []
    if directory:
        from pytusd.hooks.file import FileHooks

        timeout = float(get("hooks_file_timeout"))
        if timeout < 0:
            raise ValueError("--hooks-file-timeout must be >= 0")
        transports.append(FileHooks(directory, events, progress_interval=interval, timeout=timeout or None))
    if endpoint:
        from pytusd.hooks.http import HttpHooks

        transports.append(
            HttpHooks(
                endpoint,
                events,
                forward_headers=_names(get("hooks_http_forward_headers")),
                retries=int(get("hooks_http_retry")),
                backoff=float(get("hooks_http_backoff")),
                timeout=float(get("hooks_http_timeout")),
                size_limit=int(get("hooks_http_size_limit")),
                progress_interval=interval,
                verify=not get("hooks_http_skip_verify"),
            )
        )
    if grpc_endpoint:
        from pytusd.hooks.grpc import GrpcHooks

        grpc_timeout = float(get("hooks_grpc_timeout"))
        transports.append(
            GrpcHooks(
                grpc_endpoint,
                events,
                retries=int(get("hooks_grpc_retry")),
                backoff=float(get("hooks_grpc_backoff")),
                timeout=grpc_timeout if grpc_timeout > 0 else None,
                secure=bool(get("hooks_grpc_secure")),
                server_certificate=str(get("hooks_grpc_server_tls_certificate")),
                client_certificate=str(get("hooks_grpc_client_tls_certificate")),
                client_key=str(get("hooks_grpc_client_tls_key")),
                forward_headers=_names(get("hooks_grpc_forward_headers")),
                progress_interval=interval,
            )
        )
    if len(transports) == 1:
        return transports[0]
    from pytusd.hooks.chain import HookChain

    return HookChain(transports)


def _names(value: Any) -> list[str]:
    return [name for name in re.split(r"[\s,]+", str(value)) if name]
