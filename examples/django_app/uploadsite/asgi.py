"""The ASGI application: Django, with pytusd under ``/uploads/``.

Django cannot mount another ASGI application, so this function dispatches by path: requests under
``settings.UPLOADS_PATH`` go to pytusd's :class:`~pytusd.TusApp`, everything else to Django. It
also answers the server's lifespan events (Django's handler refuses them): on startup it applies
the migrations, creates the users named in ``EXAMPLE_USERS`` and starts pytusd; on shutdown it
stops pytusd, which lets uploads in flight save what they have.

Run it::

    EXAMPLE_DATA_DIR=./data EXAMPLE_USERS=alice:pw-alice,bob:pw-bob \\
        uvicorn uploadsite.asgi:application --app-dir examples/django_app
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "uploadsite.settings")

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.asgi import get_asgi_application

django_app = get_asgi_application()  # first: it sets Django up, which the imports below need

from uploadsite.tus import create_tus_app  # noqa: E402

tus_app = create_tus_app()
PREFIX = settings.UPLOADS_PATH  # "/uploads/"


def prepare_database() -> None:
    """Migrate, then create or update the users of ``EXAMPLE_USERS=name:password,...`` (sync: the ORM)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    users = get_user_model()
    for item in filter(None, os.environ.get("EXAMPLE_USERS", "").split(",")):
        name, _, password = item.partition(":")
        user, _ = users.objects.get_or_create(username=name.strip())
        user.set_password(password)
        user.save()


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await sync_to_async(prepare_database)()
                await tus_app.startup()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await tus_app.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http" and (scope["path"].startswith(PREFIX) or scope["path"] == PREFIX.rstrip("/")):
        await tus_app(scope, receive, send)
    else:
        await django_app(scope, receive, send)
