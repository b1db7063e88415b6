"""The FastAPI and Django examples: banner present, a decision works, and the app reads it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from tests.conftest import ORIGIN, SECRET

INERT_GA = re.compile(
    r'<script (?=[^>]*type="text/plain")(?=[^>]*data-consent="analytics")[^>]*'
    r'src="https://www\.googletagmanager\.com/gtag/js'
)
VISITOR = ("203.0.113.7", 50000)
LIVE_GA = '<script async src="https://www.googletagmanager.com/gtag/js?id=G-DEMO123456"></script>'
REFUSED = {"necessary": True, "preferences": False, "analytics": False, "marketing": False}
GRANTED = dict.fromkeys(REFUSED, True)


@pytest.fixture
def consent_log(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'consent-log.sqlite3'}"


@pytest.fixture
def fastapi_client(consent_log: str) -> Iterator[TestClient]:
    from examples.fastapi_app import create_app

    with TestClient(create_app(secret_key=SECRET, consent_log=consent_log), client=VISITOR) as client:
        yield client


@pytest.fixture(scope="module")
def django_settings() -> Iterator[None]:
    before = os.environ.get("DJANGO_SETTINGS_MODULE")
    os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_site.settings"
    yield
    if before is None:
        os.environ.pop("DJANGO_SETTINGS_MODULE", None)
    else:
        os.environ["DJANGO_SETTINGS_MODULE"] = before


@pytest.fixture
def django_client(django_settings: None, consent_log: str) -> TestClient:
    from examples.django_site.asgi import make_application

    app: ASGIApp = make_application(secret_key=SECRET, consent_log=consent_log)
    # Not as a context manager: Django's ASGI handler takes no lifespan messages.
    return TestClient(app)


def decide(client: TestClient, decision: str, **extra: Any) -> None:
    response = client.post(
        "/_consent",
        data={"decision": decision, "next": "/"},
        headers={"Origin": ORIGIN},
        follow_redirects=False,
        **extra,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"


def test_fastapi_page_has_the_banner_and_gated_analytics(fastapi_client: TestClient) -> None:
    page = fastapi_client.get("/")
    assert page.status_code == 200
    assert 'id="consent-banner"' in page.text
    assert INERT_GA.search(page.text)
    assert LIVE_GA not in page.text
    assert 'id="analytics">Analytics: not allowed.' in page.text
    assert "gtag('consent','default'," in page.text


def test_fastapi_json_route_reads_request_state_consent(fastapi_client: TestClient) -> None:
    before = fastapi_client.get("/api/consent")
    assert before.headers["content-type"] == "application/json"
    assert before.json() == {
        "decided": False,
        "categories": REFUSED,
        "language": "en",
        "analytics": False,
        "client_ip": None,
    }

    decide(fastapi_client, "accept_all")
    after = fastapi_client.get("/api/consent").json()
    assert after["decided"] is True
    assert after["categories"] == GRANTED
    assert after["analytics"] is True
    assert after["client_ip"] == VISITOR[0]  # the full address, now that analytics is granted
    page = fastapi_client.get("/")
    assert 'id="consent-banner"' not in page.text
    assert 'id="consent-settings"' in page.text
    assert LIVE_GA in page.text
    assert 'id="analytics">Analytics: allowed.' in page.text


def test_fastapi_reject_and_language(fastapi_client: TestClient) -> None:
    page = fastapi_client.get("/", headers={"Accept-Language": "nl-BE,nl;q=0.9"})
    assert '<div id="consent-banner" lang="nl"' in page.text
    decide(fastapi_client, "reject_all")
    state = fastapi_client.get("/api/consent").json()
    assert state["decided"] is True
    assert state["categories"] == REFUSED
    assert INERT_GA.search(fastapi_client.get("/").text)


def test_fastapi_docs_are_left_alone(fastapi_client: TestClient) -> None:
    docs = fastapi_client.get("/docs")
    assert docs.status_code == 200
    assert "consent-banner" not in docs.text
    assert "_consent/static" not in docs.text


#: Django sends response header names as written (``Content-Type``, ``Content-Length``,
#: ``Set-Cookie``: its ASGI handler keeps the case on purpose), and the middleware reads the response
#: headers through Starlette's ``MutableHeaders``, which matches lower-case raw names only.


def test_django_view_reads_the_decision(django_client: TestClient) -> None:
    assert django_client.get("/consent.json").json() == {
        "decided": False,
        "categories": REFUSED,
        "language": "en",
        "cookies": [],
    }
    decide(django_client, "accept_all")
    state = django_client.get("/consent.json").json()
    assert state["decided"] is True
    assert state["categories"] == GRANTED
    assert state["cookies"] == ["consent"]
    assert 'id="analytics">Analytics: allowed.' in django_client.get("/").text


def test_django_never_sees_refused_cookies(django_client: TestClient) -> None:
    decide(django_client, "reject_all")
    django_client.cookies.set("_ga", "GA1.1.123.456")
    state = django_client.get("/consent.json").json()
    assert state["categories"] == REFUSED
    assert state["cookies"] == ["consent"], "the middleware drops _ga before Django sees the request"
    assert 'id="analytics">Analytics: not allowed.' in django_client.get("/").text


def test_django_page_has_the_banner_and_gated_analytics(django_client: TestClient) -> None:
    page = django_client.get("/")
    assert page.status_code == 200
    assert 'id="consent-banner"' in page.text
    assert INERT_GA.search(page.text)
    assert LIVE_GA not in page.text
    assert "Cookie" in page.headers.get("vary", "")
    decide(django_client, "reject_all")
    after = django_client.get("/")
    assert 'id="consent-settings"' in after.text
    assert INERT_GA.search(after.text)


def test_html_with_mixed_case_header_names_is_gated() -> None:
    """The same without Django: a plain ASGI app that capitalizes its header names."""
    from consent_middleware import ConsentMiddleware
    from tests.conftest import raw_app

    body = (
        f"<!doctype html><html><head><title>T</title>{LIVE_GA}</head><body><p>Hi</p></body></html>".encode()
    )
    app = raw_app(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"Content-Type", b"text/html; charset=utf-8"),
                (b"Content-Length", b"%d" % len(body)),
            ],
        },
        {"type": "http.response.body", "body": body},
    )
    page = TestClient(ConsentMiddleware(app, secret_key=SECRET, consent_log=None)).get("/")
    assert 'id="consent-banner"' in page.text
    assert LIVE_GA not in page.text
