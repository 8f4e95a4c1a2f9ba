"""pytusd with Django's session authentication, through pre-create and pre-access hooks.

The hooks run in the event loop and see the tus request's headers, so they read Django's session
cookie from ``Cookie`` and resolve the user with Django's async session and auth APIs
(``aget_user``), exactly as ``request.auser()`` does in a Django view: an expired, logged-out or
forged session, or one whose password has since changed, is no user.
"""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace
from typing import Any

from django.conf import settings
from django.contrib.auth import aget_user
from django.http.cookie import parse_cookie

from pytusd import Config, TusApp
from pytusd.hooks import HookCall, HookRejection, HookResponse, PythonHooks
from pytusd.locks.file import FileLocker
from pytusd.stores.file import FileStore


def session_key(call: HookCall) -> str | None:
    """The session cookie's value, parsed as Django parses it for a view.

    Django's lenient parser, not ``http.cookies``: that one gives up on the whole header at the first
    cookie it finds odd (``theme=[dark]``), which browsers send without a second thought. Several
    ``Cookie`` fields (HTTP/2 may split them) are joined as Django joins them.
    """
    fields = call.request.headers.get("Cookie", [])
    return parse_cookie("; ".join(fields)).get(settings.SESSION_COOKIE_NAME) or None


async def current_user(call: HookCall) -> Any:
    """The logged-in user of the request, or raise a 403 (the session is Django's: no login, no upload)."""
    key = session_key(call)
    if key:
        session = import_module(settings.SESSION_ENGINE).SessionStore(key)
        user = await aget_user(SimpleNamespace(session=session))
        if user.is_authenticated and user.is_active:
            return user
    raise HookRejection(403, "log in first")


async def pre_create(call: HookCall) -> HookResponse:
    user = await current_user(call)
    # The owner is the user's primary key (user names can change); it overrides any "owner" the
    # client sent.
    return HookResponse(change_metadata={**call.upload.metadata, "owner": str(user.pk)})


async def pre_access(call: HookCall) -> None:
    """Before every HEAD, PATCH, GET and DELETE of an upload: only its owner gets through."""
    user = await current_user(call)
    if call.upload.metadata.get("owner") != str(user.pk):
        # 404 rather than 403: do not even confirm that someone else's upload exists.
        raise HookRejection(404, "upload not found")


def create_tus_app() -> TusApp:
    upload_dir = settings.UPLOAD_DIR
    upload_dir.mkdir(parents=True, exist_ok=True)
    return TusApp(
        FileStore(upload_dir),
        Config(base_path=settings.UPLOADS_PATH),
        locker=FileLocker(upload_dir),
        hooks=PythonHooks(pre_create=pre_create, pre_access=pre_access, timeout=10),
    )
