"""Settings of the minimal Django project: no database, no apps, one view; test-friendly.

``CONSENT`` holds the middleware's options, read by ``asgi.py``. Like the sample site it runs with
no environment: ``CONSENT_SECRET_KEY`` or the sample site's dev secret, ``CONSENT_LOG`` or
``consent-log.sqlite3`` in the working directory.
"""

from __future__ import annotations

import os
from typing import Any

from examples.site import dev_secret

# Django signs its own things with this; the middleware has its own key below. Set both in production.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or "django-insecure-example-only-do-not-deploy"
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver", "[::1]"]
ROOT_URLCONF = "examples.django_site.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware", "django.middleware.common.CommonMiddleware"]
DATABASES: dict[str, Any] = {}
TEMPLATES: list[Any] = []
USE_TZ = True
LANGUAGE_CODE = "en"

#: ConsentMiddleware's options (asgi.py passes them on as keywords).
CONSENT: dict[str, Any] = {
    "secret_key": dev_secret(),
    "languages": ["en", "nl", "fr", "de"],
    "consent_log": os.environ.get("CONSENT_LOG", "sqlite:///consent-log.sqlite3"),
    "exclude_paths": ["/admin"],
}
