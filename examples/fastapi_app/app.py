"""A FastAPI application that mounts pytusd at /files/ and uses Python hooks to:

- authenticate every tus request with a bearer token (pre-create, pre-access),
- name uploads ``<user>/<random>-<file name>`` and record the owner in the metadata (pre-create),
- refuse HEAD, PATCH, GET and DELETE on an upload to anyone but its owner (pre-access),
- move each finished file to ``<finished dir>/<user>/<file name>`` (post-finish),

plus two ordinary FastAPI routes that list and serve a user's finished files, and Prometheus metrics
with tusd's names at /metrics (opt-in for an embedded app: ``TusApp(..., metrics=Metrics())``).

Run it (tokens are ``user:token`` pairs)::

    EXAMPLE_TOKENS=alice:secret-a,bob:secret-b uvicorn app:app --app-dir examples/fastapi_app

then upload with any tus client, e.g. ``tus-js-client`` with
``headers: {Authorization: "Bearer secret-a"}`` and ``endpoint: "http://localhost:8000/files/"``.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations, and the
# dependency alias `User` below is local to create_app.
import hmac
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import FileResponse, Response

from pytusd import Config, TusApp
from pytusd.hooks import HookCall, HookRejection, HookResponse, PythonHooks
from pytusd.locks.file import FileLocker
from pytusd.metrics.prometheus import Metrics
from pytusd.stores.file import FileStore

#: Names a file store keeps next to upload data; an upload ID may not end with them.
RESERVED_SUFFIXES = (".info", ".lock", ".stop", ".tmp", ".part")


def safe_name(filename: str) -> str:
    """A file name that is safe in a URL, an upload ID and a directory: no paths, no odd characters."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(filename.replace("\\", "/")))[:100].lstrip(".")
    if not name:
        return "upload"
    return name + "_" if name.endswith(RESERVED_SUFFIXES) else name


def create_app(upload_dir: Path, finished_dir: Path, tokens: Mapping[str, str]) -> FastAPI:
    """``tokens`` maps bearer tokens to user names."""
    upload_dir.mkdir(parents=True, exist_ok=True)
    finished_dir.mkdir(parents=True, exist_ok=True)

    def user_for(authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        given = authorization[len("Bearer ") :].strip()
        for token, user in tokens.items():
            if hmac.compare_digest(token, given):
                return user
        return None

    def authenticate(call: HookCall) -> str:
        user = user_for(call.request.header("Authorization"))
        if user is None:
            raise HookRejection(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        return user

    # -- the hooks ------------------------------------------------------------------------------

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

    def post_finish(call: HookCall) -> None:
        """Sync on purpose: pytusd runs sync hooks in a worker thread, so file I/O is fine here."""
        upload = call.upload
        if upload.is_partial:
            return  # a part of a concatenated upload: the final upload is what gets moved
        owner = upload.metadata["owner"]
        target_dir = finished_dir / owner
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / safe_name(upload.metadata.get("filename", upload.id))
        if target.exists():
            target = target.with_name(f"{secrets.token_hex(4)}-{target.name}")
        shutil.move(upload.storage["Path"], target)
        # The upload leaves the tus store: its info file goes too (a HEAD now answers 404).
        Path(upload.storage["InfoPath"]).unlink(missing_ok=True)

    hooks = PythonHooks(pre_create=pre_create, pre_access=pre_access, post_finish=post_finish, timeout=10)
    metrics = Metrics()
    tus = TusApp(
        FileStore(upload_dir), Config(base_path="/files/"), locker=FileLocker(upload_dir), hooks=hooks, metrics=metrics
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Mounted apps get no lifespan events of their own: start and stop pytusd with FastAPI.
        await tus.startup()
        yield
        await tus.shutdown()

    app = FastAPI(title="uploads", lifespan=lifespan)
    app.mount("/files", tus)

    # -- ordinary routes, same tokens --------------------------------------------------------------

    def current_user(authorization: Annotated[str | None, Header()] = None) -> str:
        user = user_for(authorization)
        if user is None:
            raise HTTPException(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        return user

    User = Annotated[str, Depends(current_user)]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics")
    async def scrape() -> Response:
        # A real deployment keeps this route from the public (a firewall, or a check here).
        return Response(metrics.exposition(), media_type=metrics.content_type)

    @app.get("/me/files")
    async def my_files(user: User) -> list[str]:
        folder = finished_dir / user
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    @app.get("/me/files/{name}")
    async def my_file(name: str, user: User) -> FileResponse:
        path = finished_dir / user / safe_name(name)
        if safe_name(name) != name or not path.is_file():
            raise HTTPException(404, "no such file")
        return FileResponse(path)

    return app


def app_from_env() -> FastAPI:
    """``EXAMPLE_TOKENS=user:token,...``, ``UPLOAD_DIR`` (./uploads), ``FINISHED_DIR`` (./finished)."""
    pairs = [item.split(":", 1) for item in os.environ.get("EXAMPLE_TOKENS", "").split(",") if ":" in item]
    tokens = {token.strip(): user.strip() for user, token in pairs}
    if not tokens:
        raise RuntimeError("set EXAMPLE_TOKENS=user:token[,user:token...]")
    return create_app(
        Path(os.environ.get("UPLOAD_DIR", "uploads")),
        Path(os.environ.get("FINISHED_DIR", "finished")),
        tokens,
    )


def __getattr__(name: str) -> FastAPI:
    """``uvicorn app:app`` builds the app from the environment; importing the module does not."""
    if name == "app":
        return app_from_env()
    raise AttributeError(name)
