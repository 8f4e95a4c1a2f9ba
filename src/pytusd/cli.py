"""The ``pytusd`` command: flags (each also a ``PYTUSD_*`` environment variable) and serving.

Worker processes are started by uvicorn's supervisor with the spawn method, so each worker builds
its app from the environment: the parent writes every resolved setting into ``PYTUSD_*`` variables
and the workers read the same variables through :func:`app_from_env`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from pytusd import __version__
from pytusd.asgi import TusApp
from pytusd.config import Config
from pytusd.flags import Flag, convert, env_name, parse_duration, parse_size
from pytusd.hooks.flags import HOOK_FLAGS, hooks_from_settings
from pytusd.locks.base import Locker
from pytusd.locks.file import FileLocker
from pytusd.metrics.flags import METRICS_FLAGS, check_metrics_settings, metrics_directory, metrics_from_settings
from pytusd.network import NETWORK_FLAGS, check_network_settings, uses_tls, uvicorn_options
from pytusd.page import UploadPage, page_paths
from pytusd.protocol.cors import CORS_FLAGS, cors_settings
from pytusd.stores.azure.flags import AZURE_FLAGS
from pytusd.stores.base import DataStore
from pytusd.stores.choice import data_location, object_store_from_settings
from pytusd.stores.file import FileStore
from pytusd.stores.gcs.flags import GCS_FLAGS
from pytusd.stores.perms import PERM_FLAGS, makedirs, perms_from_settings
from pytusd.stores.s3.flags import S3_FLAGS

FLAGS: tuple[Flag, ...] = (
    Flag("host", "str", "0.0.0.0", "address to listen on"),
    Flag("port", "int", 8080, "port to listen on"),
    Flag("base-path", "str", "/files/", "URL path under which uploads live"),
    Flag("upload-dir", "str", "./data", "directory for uploads (file storage)"),
    Flag("max-size", "size", 0, "largest upload in bytes (0: no limit)"),
    Flag("expire-after", "duration", 0.0, "remove unfinished uploads this long after their last write (0: never)"),
    Flag("expire-interval", "duration", 60.0, "how often to look for expired uploads"),
    Flag("behind-proxy", "bool", False, "trust X-Forwarded-Host/-Proto and Forwarded for URLs"),
    Flag("upload-page", "bool", True, "serve a browser upload page (Uppy) at / and above the base path"),
    *CORS_FLAGS,
    Flag("disable-download", "bool", False, "do not serve GET downloads"),
    Flag("disable-termination", "bool", False, "do not allow DELETE (termination extension)"),
    Flag("disable-concatenation", "bool", False, "do not offer the concatenation extension"),
    Flag("lock-timeout", "duration", 20.0, "how long a request waits for another to release an upload (then 423)"),
    Flag(
        "lock-grace",
        "duration",
        0.5,
        "a request whose body received bytes this recently keeps its upload against newer requests (they wait)",
    ),
    Flag("redis-url", "str", "", "keep locks in Redis (redis://HOST:PORT/DB; rediss:// for TLS): several instances"),
    Flag("redis-lock-ttl", "duration", 10.0, "a Redis lock lapses this long after its instance stops renewing it"),
    Flag("redis-prefix", "str", "pytusd:", "prefix of pytusd's Redis keys and channels"),
    Flag(
        "progress-interval", "duration", 1.0, "seconds between 104 progress responses to IETF draft clients (0: none)"
    ),
    Flag(
        "interim-responses",
        "bool",
        True,
        "send 104 interim responses to IETF draft clients (turn off behind a proxy that does not pass 1xx on)",
    ),
    Flag("fsync", "bool", False, "fsync every acknowledged write (survives power loss; slower)"),
    Flag("workers", "int", 1, "worker processes sharing the same uploads"),
    Flag("unix-sock", "str", "", "listen on this Unix socket instead of host/port"),
    Flag("log-format", "str", "text", "log format: text or json"),
    Flag("log-level", "str", "info", "log level: debug, info, warning, error"),
    *PERM_FLAGS,
    *HOOK_FLAGS,
    *S3_FLAGS,
    *GCS_FLAGS,
    *AZURE_FLAGS,
    *METRICS_FLAGS,
    *NETWORK_FLAGS,
)


def build_parser(environ: dict[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="pytusd",
        description="Resumable-upload server (tus 1.0.0). Every flag can also be set as PYTUSD_<FLAG>.",
    )
    for flag in FLAGS:
        default = flag.default
        env_value = env.get(env_name(flag.name))
        if env_value is not None:
            try:
                default = convert(flag, env_value)
            except (ValueError, argparse.ArgumentTypeError) as exc:
                parser.error(f"invalid {env_name(flag.name)}: {exc}")
        help_text = f"{flag.help} [env {env_name(flag.name)}; default {flag.default!r}]"
        option = "--" + flag.name
        if flag.kind == "bool":
            parser.add_argument(option, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        else:
            converters: dict[str, Callable[[str], Any]] = {"int": int, "duration": parse_duration, "size": parse_size}
            converter = converters.get(flag.kind, str)
            parser.add_argument(option, type=converter, default=default, help=help_text)
    parser.add_argument("--version", action="version", version=f"pytusd {__version__}")
    return parser


def app_from_settings(settings: dict[str, Any]) -> TusApp:
    config = Config(
        base_path=settings["base_path"],
        max_size=settings["max_size"],
        expire_after=settings["expire_after"],
        expire_interval=settings["expire_interval"],
        behind_proxy=settings["behind_proxy"],
        **cors_settings(settings),
        disable_download=settings["disable_download"],
        disable_termination=settings["disable_termination"],
        disable_concatenation=settings["disable_concatenation"],
        lock_timeout=settings["lock_timeout"],
        lock_grace=settings["lock_grace"],
        progress_interval=settings["progress_interval"],
        interim_responses=settings["interim_responses"],
        network_timeout=settings["network_timeout"],
    )
    directory = settings["upload_dir"]
    dir_perms, file_perms = perms_from_settings(settings)
    makedirs(directory, dir_perms)
    store: DataStore = object_store_from_settings(settings) or FileStore(
        directory, fsync=settings["fsync"], dir_perms=dir_perms, file_perms=file_perms
    )
    metrics, metrics_path = metrics_from_settings(settings)
    return TusApp(
        store,
        config,
        locker=locker_from_settings(settings, store),
        hooks=hooks_from_settings(settings),
        metrics=metrics,
        metrics_path=metrics_path,
    )


def locker_from_settings(settings: dict[str, Any], store: DataStore | None = None) -> Locker:
    """Redis locks for instances that share uploads; else file locks shared by this machine's workers."""
    if settings["redis_url"]:
        from pytusd.locks.redis import RedisLocker  # redis-py is an optional dependency

        return RedisLocker(settings["redis_url"], ttl=settings["redis_lock_ttl"], prefix=settings["redis_prefix"])
    # With S3 the upload directory holds the lock files that workers on this machine share.
    target = store.lock_target if isinstance(store, FileStore) else None
    dir_perms, file_perms = perms_from_settings(settings)
    return FileLocker(settings["upload_dir"], lock_target=target, dir_perms=dir_perms, file_perms=file_perms)


def app_from_env() -> TusApp | UploadPage:
    """App factory for uvicorn in each worker process: settings come from ``PYTUSD_*`` variables."""
    from pytusd.server import chain_shutdown_signals

    args = build_parser().parse_args([])
    app = app_from_settings(vars(args))
    chain_shutdown_signals(app)
    return UploadPage(app, app.config.base_path) if args.upload_page else app


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _log_config(log_format: str, level: str) -> dict[str, Any]:
    formatter: dict[str, Any] = (
        {"()": _JsonFormatter}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "pytusd": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_format not in ("text", "json"):
        parser.error("--log-format must be text or json")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    settings = vars(args)
    try:
        # Fail here, with a usage message, not in every worker.
        hooks_from_settings(settings)
        cors_settings(settings)
        perms_from_settings(settings)
        object_store_from_settings(settings)
        locker_from_settings(settings)
        check_metrics_settings(settings)
        check_network_settings(settings)
    except (ValueError, ImportError) as exc:
        parser.error(str(exc))
    # Workers rebuild the app from the environment: hand them exactly what we resolved.
    for flag in FLAGS:
        value = settings[flag.name.replace("-", "_")]
        os.environ[env_name(flag.name)] = ("1" if value else "0") if flag.kind == "bool" else str(value)
    makedirs(args.upload_dir, perms_from_settings(settings)[0])

    from pytusd.server import serve  # imported late: uvicorn is only needed to serve

    base = Config(base_path=args.base_path).base_path
    if args.unix_sock:
        where = f"unix:{args.unix_sock} (path {base})"
    else:
        shown = "localhost" if args.host in ("0.0.0.0", "::") else args.host
        where = f"{'https' if uses_tls(settings) else 'http'}://{shown}:{args.port}{base}"
    print(f"pytusd {__version__} serving uploads on {where} (data in {data_location(settings)})", flush=True)
    if args.upload_page:
        print(f"upload page at {' and '.join(page_paths(base))} (--no-upload-page: none)", flush=True)
    # uvicorn re-raises the stop signal once it has shut down gracefully; by then the work is done,
    # so the process ends with status 0 instead of dying of the signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    with metrics_directory(settings):
        serve(
            host=args.host,
            port=args.port,
            uds=args.unix_sock or None,
            workers=args.workers,
            log_config=_log_config(args.log_format, args.log_level),
            network_timeout=args.network_timeout,
            options=uvicorn_options(settings),
        )


if __name__ == "__main__":  # pragma: no cover
    main()
