"""Settings of the example: the smallest Django that has users, sessions and a database.

``EXAMPLE_DATA_DIR`` (default ``./data``) holds the SQLite database and the uploads;
``DJANGO_SECRET_KEY`` signs the session cookies (without it a random key is made, so sessions
last only as long as the process and work with a single worker).
"""

import os
from pathlib import Path

from django.core.management.utils import get_random_secret_key

DATA_DIR = Path(os.environ.get("EXAMPLE_DATA_DIR", "data")).resolve()
UPLOAD_DIR = DATA_DIR / "uploads"
#: Where pytusd is reached; asgi.py sends every request under it to the tus app.
UPLOADS_PATH = "/uploads/"

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or get_random_secret_key()
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")

INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "uploadsite.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA_DIR / "db.sqlite3"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

# Django's defaults, spelled out because the tus requests rely on them: the session cookie is
# HttpOnly (scripts cannot read it, the browser still sends it) and SameSite=Lax (other sites
# cannot make a browser send it with their POST, PATCH or DELETE).
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
