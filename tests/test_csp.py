"""The opt-in CSP mode: operator sources plus granted services' hosts, with the page's nonce."""

from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from consent_middleware import ConsentMiddleware
from tests.conftest import ORIGIN, SECRET, html_app, html_page

CSP = {"script-src": ["'self'"], "img-src": ["'self'", "data:"]}


def directive(header: str, name: str) -> list[str]:
    for part in header.split(";"):
        words = part.split()
        if words and words[0] == name:
            return words[1:]
    raise AssertionError(f"no {name} in {header}")


def test_no_policy_unless_asked() -> None:
    response = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET)).get("/")
    assert "content-security-policy" not in response.headers


def test_tracker_hosts_are_absent_before_consent() -> None:
    response = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET, csp=CSP)).get("/")
    header = response.headers["content-security-policy"]
    assert "google" not in header
    assert directive(header, "img-src") == ["'self'", "data:"]
    assert directive(header, "connect-src") == ["'self'"]


def test_granted_services_hosts_are_allowed_with_subdomains() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET, csp=CSP))
    client.post("/_consent", json={"decision": "accept_all"}, headers={"Origin": ORIGIN})
    header = client.get("/").headers["content-security-policy"]
    sources = directive(header, "connect-src")
    assert "google-analytics.com" in sources
    assert "*.google-analytics.com" in sources
    assert "*.googletagmanager.com" in directive(header, "script-src")


def test_injected_markup_uses_the_nonce_of_the_header() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET, csp=CSP))
    response = client.get("/")
    nonces = [
        source
        for source in directive(response.headers["content-security-policy"], "script-src")
        if source.startswith("'nonce-")
    ]
    assert len(nonces) == 1
    nonce = nonces[0][len("'nonce-") : -1]
    tags = re.findall(r"<(?:script|link)\b[^>]*>", response.text)
    assert tags
    assert all(f'nonce="{nonce}"' in tag for tag in tags)
    assert client.get("/").headers["content-security-policy"] != response.headers["content-security-policy"]


def test_the_apps_own_nonce_is_used() -> None:
    async def page(request: Request) -> Response:
        request.state.csp_nonce = "appNonce12345"
        return HTMLResponse(html_page().decode())

    app = ConsentMiddleware(Starlette(routes=[Route("/", page)]), secret_key=SECRET, csp=CSP)
    header = TestClient(app).get("/").headers["content-security-policy"]
    assert "'nonce-appNonce12345'" in directive(header, "script-src")


def test_malformed_app_nonce_is_never_echoed() -> None:
    async def page(request: Request) -> Response:
        request.state.csp_nonce = "x'; script-src *"
        return HTMLResponse(html_page().decode())

    response = TestClient(ConsentMiddleware(Starlette(routes=[Route("/", page)]), secret_key=SECRET)).get("/")
    assert "script-src *" not in response.text
    assert "nonce=" not in response.text


def test_banner_script_is_told_to_reload_in_csp_mode() -> None:
    response = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET, csp=CSP)).get("/")
    assert "data-consent-reload" in response.text


def test_the_middlewares_own_pages_carry_a_strict_policy() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET))
    for path in ("/_consent/preferences", "/_consent/cookies"):
        header = client.get(path).headers["content-security-policy"]
        assert directive(header, "default-src") == ["'none'"]
        assert directive(header, "form-action") == ["'self'"]
