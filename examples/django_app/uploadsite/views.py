"""Log in and out with Django's session authentication (async views: Django runs them in the loop)."""

from django.contrib.auth import aauthenticate, alogin, alogout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.utils.html import escape
from django.views.decorators.http import require_http_methods

FORM = """<!doctype html><title>Log in</title>
<form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="{token}">
<input name="username" autocomplete="username"> <input name="password" type="password">
<button>Log in</button></form>
"""


@require_http_methods(["GET", "POST"])
async def login_view(request: HttpRequest) -> HttpResponse:
    """GET: a form (and the CSRF cookie). POST ``username``, ``password``: the session cookie."""
    if request.method == "GET":
        return HttpResponse(FORM.format(token=escape(get_token(request))))
    user = await aauthenticate(request, username=request.POST.get("username"), password=request.POST.get("password"))
    if user is None:
        return JsonResponse({"error": "wrong user name or password"}, status=403)
    await alogin(request, user)
    return JsonResponse({"username": user.get_username()})


@require_http_methods(["POST"])
async def logout_view(request: HttpRequest) -> HttpResponse:
    await alogout(request)
    return HttpResponse(status=204)


async def me(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    if not user.is_authenticated:
        return JsonResponse({"error": "log in first"}, status=403)
    return JsonResponse({"username": user.get_username()})


async def health(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})
