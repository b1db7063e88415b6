"""The middleware in a FastAPI app: ``uvicorn examples.fastapi_app:app``.

``app.add_middleware(ConsentMiddleware, ...)`` mounts it; a route reads the visitor's decision from
``request.state.consent``. FastAPI's own documentation pages are left alone (``exclude_paths``):
they are for developers, not visitors. Like ``examples/site.py`` it runs with no environment:
the secret is ``CONSENT_SECRET_KEY`` or the sample site's dev secret, the consent log
``CONSENT_LOG`` or ``consent-log.sqlite3`` in the working directory.
"""

from __future__ import annotations

import html
import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from consent_middleware import ConsentMiddleware
from consent_middleware.state import ConsentState
from examples.site import GA_TAG, dev_secret


def consent_of(request: Request) -> ConsentState:
    """The decision the middleware put in the request's state (``scope["state"]["consent"]``)."""
    consent: ConsentState = request.state.consent
    return consent


def create_app(**options: Any) -> FastAPI:
    """The app, with ``options`` over the middleware's settings below (the tests pass a log)."""
    app = FastAPI(title="Brightlane API")

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> str:
        consent = consent_of(request)
        analytics = "allowed" if consent.granted("analytics") else "not allowed"
        return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Brightlane API</title>
{GA_TAG}
</head>
<body>
<main>
<h1>Brightlane API</h1>
<p id="analytics">Analytics: {html.escape(analytics)}.</p>
<p><a href="/api/consent">Your consent, as the app sees it (JSON)</a></p>
</main>
</body>
</html>
"""

    @app.get("/api/consent")
    async def consent_json(request: Request) -> dict[str, Any]:
        consent = consent_of(request)
        return {
            "decided": consent.decided,
            "categories": dict(consent.categories),
            "language": consent.language,
            "analytics": consent.granted("analytics"),
            # None until the visitor grants analytics (the device category).
            "client_ip": consent.client_ip,
        }

    settings: dict[str, Any] = {
        "secret_key": dev_secret(),
        "languages": ["en", "nl", "fr", "de"],
        "consent_log": os.environ.get("CONSENT_LOG", "sqlite:///consent-log.sqlite3"),
        "exclude_paths": ["/docs", "/redoc", "/openapi.json"],
    }
    app.add_middleware(ConsentMiddleware, **{**settings, **options})
    return app


app = create_app()
