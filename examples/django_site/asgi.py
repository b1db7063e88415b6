"""The ASGI entry point: Django's application with ConsentMiddleware around it.

``uvicorn examples.django_site.asgi:application``. The middleware is pure ASGI, so it wraps the
whole Django application (it is not an entry of Django's ``MIDDLEWARE``); its options are
``settings.CONSENT``.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_site.settings")

from django.conf import settings  # type: ignore[import-untyped]
from django.core.asgi import get_asgi_application  # type: ignore[import-untyped]

from consent_middleware import ConsentMiddleware


def make_application(**options: Any) -> ConsentMiddleware:
    """Django's ASGI application behind the middleware; ``options`` over ``settings.CONSENT``."""
    return ConsentMiddleware(get_asgi_application(), **{**settings.CONSENT, **options})


application = make_application()
