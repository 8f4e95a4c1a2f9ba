"""The upload page: Uppy's Dashboard with its Tus plugin, served in front of the tus app.

The ``pytusd`` command puts :class:`UploadPage` in front of :class:`~pytusd.asgi.TusApp` unless
``--no-upload-page``; a mounted ``TusApp`` gets no page unless its host wraps it the same way.
Only GET and HEAD of the page's own paths are answered here; every other request goes to the app
unchanged. Uppy's built files (``static/uppy/``) are copied from npm into the package when the
wheel is built (``hatch_build.py``); they are not in git.
"""

from __future__ import annotations

import hashlib
import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytusd.asgi import Receive, Scope, Send
from pytusd.metrics.recorder import NO_METRICS, Recorder

logger = logging.getLogger("pytusd")

STATIC_DIR = Path(__file__).parent / "static"
#: Uppy's files, copied in at build time (hatch_build.py); the page cannot work without them.
UPPY_FILES = ("uppy/uppy.min.js", "uppy/uppy.min.css")
#: Where the assets live below the page's path (relative URLs in index.html).
ASSET_DIR = "_page/"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# Uppy draws previews from blob: URLs and sets styles through the DOM (allowed without 'unsafe-inline');
# uploads go to the same origin as the page (relative endpoint).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON = [
    ("x-content-type-options", "nosniff"),
    # Revalidate every time (a cheap 304 thanks to the ETag): the file names carry no version.
    ("cache-control", "no-cache"),
    ("referrer-policy", "no-referrer"),
]
UNAVAILABLE = (
    b"the upload page is unavailable: this copy of pytusd was not built with Uppy's files "
    b"(build or install it with npm available, see README), or run with --no-upload-page\n"
)

ASGIApp = Any  # an ASGI callable (TusApp, or anything else)


@dataclass(frozen=True)
class _File:
    body: bytes
    headers: list[tuple[bytes, bytes]]
    etag: bytes | None
    status: int = 200


def _file(body: bytes, content_type: str, extra: tuple[tuple[str, str], ...] = (), *, status: int = 200) -> _File:
    headers = [("content-type", content_type), *_COMMON, *extra]
    encoded = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    if status != 200:
        return _File(body, encoded, None, status)
    etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
    return _File(body, [*encoded, (b"etag", etag)], etag)


def page_paths(base_path: str) -> list[str]:
    """``/`` and the directory above the base path (``/prefix/`` for ``/prefix/files/``), so that a proxy
    which passes only ``/prefix/`` on still reaches the page."""
    parent = base_path.rstrip("/").rsplit("/", 1)[0] + "/"
    return ["/"] if parent == "/" else ["/", parent]


def available(static_dir: Path = STATIC_DIR) -> bool:
    return all((static_dir / name).is_file() for name in UPPY_FILES)


class UploadPage:
    """An ASGI app that answers the upload page and its assets, and hands everything else to ``app``.

    ``base_path``: the tus app's (normalized, as :class:`~pytusd.config.Config` has it).
    """

    def __init__(self, app: ASGIApp, base_path: str, *, static_dir: Path = STATIC_DIR) -> None:
        self.app = app
        self.available = available(static_dir)
        if not self.available:
            logger.warning("upload page unavailable: Uppy's files are missing from %s", static_dir / "uppy")
        self._routes: dict[str, _File] = {}
        template = (static_dir / "index.html").read_text("utf-8")
        assets = ["page.js", "page.css", *UPPY_FILES] if self.available else []
        for path in page_paths(base_path):
            if self.available:
                # The endpoint relative to the page ("./" keeps the page's query string out of it).
                endpoint = "./" + base_path[len(path) :]
                text = template.replace("{endpoint}", html.escape(endpoint, quote=True))
                page = _file(text.encode(), _TYPES[".html"], (("content-security-policy", CSP),))
            else:
                page = _file(UNAVAILABLE, "text/plain; charset=utf-8", status=503)
            self._routes[path] = page
            for name in assets:
                body = (static_dir / name).read_bytes()
                self._routes[path + ASSET_DIR + name] = _file(body, _TYPES[Path(name).suffix])

    @property
    def metrics(self) -> Recorder:
        """The app's, for pytusd's serving layer (it counts connections there)."""
        metrics: Recorder = getattr(self.app, "metrics", NO_METRICS)
        return metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            found = self._routes.get(scope["path"])
            if found is not None:
                await self._send(found, scope, send)
                return
        await self.app(scope, receive, send)

    async def _send(self, found: _File, scope: Scope, send: Send) -> None:
        if found.etag is not None and _matches(scope, found.etag):
            # A 304 has no body and no Content-Length of its own (RFC 9110 15.4.5).
            await send({"type": "http.response.start", "status": 304, "headers": found.headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = [*found.headers, (b"content-length", str(len(found.body)).encode())]
        await send({"type": "http.response.start", "status": found.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else found.body})


def _matches(scope: Scope, etag: bytes) -> bool:
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            tags = [tag.strip() for tag in value.split(b",")]
            return etag in tags or b"*" in tags or b"W/" + etag in tags
    return False
