"""A Litestar application with pytusd mounted at /uploads/ and Python hooks that:

- authenticate every tus request with a bearer token (pre-create, pre-access; 401 without one),
- name uploads ``<user>/<random>-<file name>`` and record the owner in the metadata (pre-create),
- refuse HEAD, PATCH, GET and DELETE on an upload to anyone but its owner (pre-access; 404),

plus ordinary Litestar routes beside the mount: ``/health`` and ``/me`` (who the token belongs to).

Run it (tokens are ``user:token`` pairs)::

    EXAMPLE_TOKENS=alice:secret-a,bob:secret-b uvicorn app:app --app-dir examples/litestar_app

then upload with any tus client to ``http://localhost:8000/uploads/`` with the header
``Authorization: Bearer secret-a``.
"""

# No `from __future__ import annotations` here: Litestar reads the handlers' annotations, and
# the handlers are local to create_app.
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from litestar import Litestar, Request, asgi, get
from litestar.exceptions import NotAuthorizedException
from litestar.types import Receive, Scope, Send

from pytusd import Config, TusApp
from pytusd.hooks import HookCall, HookRejection, HookResponse, PythonHooks
from pytusd.locks.file import FileLocker
from pytusd.stores.file import FileStore

#: Where the tus app is mounted; ``Config.base_path`` must be the same path with a trailing slash.
PREFIX = "/uploads"

#: Names a file store keeps next to upload data; an upload ID may not end with them.
RESERVED_SUFFIXES = (".info", ".lock", ".stop", ".tmp", ".part")


def safe_name(filename: str) -> str:
    """A file name that is safe in a URL and an upload ID: no paths, no odd characters."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(filename.replace("\\", "/")))[:100].lstrip(".")
    if not name:
        return "upload"
    return name + "_" if name.endswith(RESERVED_SUFFIXES) else name


def create_app(upload_dir: Path, tokens: Mapping[str, str]) -> Litestar:
    """``tokens`` maps bearer tokens to user names."""
    upload_dir.mkdir(parents=True, exist_ok=True)

    def user_for(authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        given = authorization[len("Bearer ") :].strip()
        for token, user in tokens.items():
            if hmac.compare_digest(token, given):
                return user
        return None

    # -- the hooks: they see the request's headers (call.request), so they do the login check ----

    def authenticate(call: HookCall) -> str:
        user = user_for(call.request.header("Authorization"))
        if user is None:
            raise HookRejection(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        return user

    async def pre_create(call: HookCall) -> HookResponse:
        user = authenticate(call)
        name = safe_name(call.upload.metadata.get("filename", ""))
        return HookResponse(
            change_id=f"{user}/{secrets.token_hex(8)}-{name}",
            change_metadata={**call.upload.metadata, "owner": user},
        )

    async def pre_access(call: HookCall) -> None:
        user = authenticate(call)
        if call.upload.metadata.get("owner") != user:
            # 404 rather than 403: do not even confirm that someone else's upload exists.
            raise HookRejection(404, "upload not found")

    hooks = PythonHooks(pre_create=pre_create, pre_access=pre_access, timeout=10)
    tus = TusApp(FileStore(upload_dir), Config(base_path=PREFIX + "/"), locker=FileLocker(upload_dir), hooks=hooks)

    @asgi(PREFIX, is_mount=True)
    async def uploads(scope: Scope, receive: Receive, send: Send) -> None:
        # Litestar hands a mounted app the path below the mount ("/alice/x/"); pytusd finds the
        # request's own path in raw_path when its base path is not in the one it was given.
        await tus(scope, receive, send)

    # -- ordinary routes ------------------------------------------------------------------------

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @get("/me")
    async def me(request: Request) -> dict[str, str]:
        user = user_for(request.headers.get("authorization"))
        if user is None:
            raise NotAuthorizedException("a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        return {"user": user, "uploads": PREFIX + "/"}

    # Mounted apps get no lifespan events of their own: start and stop pytusd with Litestar.
    return Litestar(route_handlers=[uploads, health, me], on_startup=[tus.startup], on_shutdown=[tus.shutdown])


def app_from_env() -> Litestar:
    """``EXAMPLE_TOKENS=user:token,...`` and ``UPLOAD_DIR`` (./uploads)."""
    pairs = [item.split(":", 1) for item in os.environ.get("EXAMPLE_TOKENS", "").split(",") if ":" in item]
    tokens = {token.strip(): user.strip() for user, token in pairs}
    if not tokens:
        raise RuntimeError("set EXAMPLE_TOKENS=user:token[,user:token...]")
    return create_app(Path(os.environ.get("UPLOAD_DIR", "uploads")), tokens)


def __getattr__(name: str) -> Litestar:
    """``uvicorn app:app`` builds the app from the environment; importing the module does not."""
    if name == "app":
        return app_from_env()
    raise AttributeError(name)
