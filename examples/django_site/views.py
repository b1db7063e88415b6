"""Views reading the visitor's decision: in Django it is ``request.scope["state"]["consent"]``
(``request.scope`` is the ASGI scope the middleware filled in)."""

from __future__ import annotations

import html
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse  # type: ignore[import-untyped]

from consent_middleware.state import ConsentState
from examples.site import GA_TAG


def consent_of(request: HttpRequest) -> ConsentState:
    consent: ConsentState = request.scope["state"]["consent"]
    return consent


def home(request: HttpRequest) -> HttpResponse:
    consent = consent_of(request)
    analytics = "allowed" if consent.granted("analytics") else "not allowed"
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Brightlane on Django</title>
{GA_TAG}
</head>
<body>
<main>
<h1>Brightlane on Django</h1>
<p id="analytics">Analytics: {html.escape(analytics)}.</p>
</main>
</body>
</html>
"""
    response: HttpResponse = HttpResponse(page, content_type="text/html; charset=utf-8")
    return response


def consent_json(request: HttpRequest) -> JsonResponse:
    consent = consent_of(request)
    body: dict[str, Any] = {
        "decided": consent.decided,
        "categories": dict(consent.categories),
        "language": consent.language,
        # The cookies Django was given: those of refused categories never reach it.
        "cookies": sorted(request.COOKIES),
    }
    response: JsonResponse = JsonResponse(body)
    return response
