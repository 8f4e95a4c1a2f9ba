"""Serving the app with uvicorn (uvloop + httptools), one process or several.

Only the piece uvicorn cannot know is added: on SIGTERM/SIGINT, uploads in flight must stop
reading and save what they have, instead of uvicorn waiting for bodies that may take hours.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import resource
import signal
from types import FrameType
from typing import Any

import uvicorn

from pytusd.asgi import TusApp
from pytusd.serving import BufferedHttpProtocol, ReadBudget

#: Seconds to wait for requests to finish after they were told to stop (--shutdown-timeout, as tusd).
GRACEFUL_TIMEOUT = 10.0
#: Seconds a request head, an idle connection or a quiet body may take (--network-timeout, as tusd).
NETWORK_TIMEOUT = 60.0


def chain_shutdown_signals(app: TusApp) -> None:
    """Make SIGINT/SIGTERM stop the app's uploads, then do what the server did before.

    Called while uvicorn loads the app, i.e. after uvicorn installed its own signal handlers and
    inside its running loop, in each worker process.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(app.uploads.shutdown)
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, handler)


def raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard one.

    Each upload in flight holds its connection, its data file and, while spliced, a pipe and a
    second socket descriptor; the usual soft limit of 1024 would cap a server at a few hundred
    uploads. Go programs (tusd among them) get the same raise from their runtime.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(
    *,
    host: str,
    port: int,
    uds: str | None,
    workers: int,
    log_config: dict[str, Any],
    network_timeout: float = NETWORK_TIMEOUT,
    options: dict[str, Any] | None = None,
) -> None:
    """Serve with uvicorn; ``options``: more of ``uvicorn.run``'s arguments (pytusd.network's)."""
    raise_open_file_limit()  # before uvicorn starts workers: they inherit it
    settings: dict[str, Any] = {
        "timeout_keep_alive": network_timeout,  # idle keep-alive connections close after it, as in tusd
        "timeout_graceful_shutdown": GRACEFUL_TIMEOUT,
        **(options or {}),
    }
    uvicorn.run(
        "pytusd.cli:app_from_env",
        factory=True,
        host=host,
        port=port,
        uds=uds,
        workers=workers,
        log_config=log_config,
        loop="uvloop",
        # One read budget (and buffer) per server; each worker process gets a fresh one.
        http=functools.partial(  # type: ignore[arg-type]
            BufferedHttpProtocol, budget=ReadBudget(), network_timeout=network_timeout
        ),
        lifespan="on",
        proxy_headers=False,  # the app decides what to trust (--behind-proxy)
        server_header=False,
        access_log=False,
        **settings,
    )
