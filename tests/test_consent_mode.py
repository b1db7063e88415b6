"""Google Consent Mode v2 defaults right after <head>, from the server-side state."""

from __future__ import annotations

import json
import re

from starlette.testclient import TestClient

from consent_middleware import ConsentMiddleware
from tests.conftest import ORIGIN, SECRET, html_app

PAGE = b"<!doctype html><html><head><script src='/app.js'></script></head><body>x</body></html>"


def defaults(page: str) -> dict[str, str]:
    match = re.search(r"gtag\('consent','default',(\{.*?\})\);", page)
    assert match is not None
    values: dict[str, str] = json.loads(match.group(1))
    return values


def test_defaults_come_right_after_head_before_any_tag() -> None:
    page = TestClient(ConsentMiddleware(html_app(PAGE), secret_key=SECRET)).get("/").text
    assert page.startswith("<!doctype html><html><head><script>window.dataLayer=window.dataLayer||[];")
    assert page.index("gtag('consent','default'") < page.index("/app.js")


def test_everything_but_security_is_denied_before_a_choice() -> None:
    page = TestClient(ConsentMiddleware(html_app(PAGE), secret_key=SECRET)).get("/").text
    assert defaults(page) == {
        "ad_storage": "denied",
        "ad_user_data": "denied",
        "ad_personalization": "denied",
        "analytics_storage": "denied",
        "functionality_storage": "denied",
        "personalization_storage": "denied",
        "security_storage": "granted",
    }


def test_values_follow_the_granted_categories() -> None:
    client = TestClient(ConsentMiddleware(html_app(PAGE), secret_key=SECRET))
    client.post(
        "/_consent", json={"decision": "custom", "categories": ["analytics"]}, headers={"Origin": ORIGIN}
    )
    values = defaults(client.get("/").text)
    assert values["analytics_storage"] == "granted"
    assert values["ad_storage"] == values["ad_user_data"] == values["ad_personalization"] == "denied"
    assert values["functionality_storage"] == "denied"


def test_accept_all_grants_every_signal() -> None:
    client = TestClient(ConsentMiddleware(html_app(PAGE), secret_key=SECRET))
    client.post("/_consent", json={"decision": "accept_all"}, headers={"Origin": ORIGIN})
    assert set(defaults(client.get("/").text).values()) == {"granted"}


def test_snippet_is_absent_when_turned_off() -> None:
    page = TestClient(ConsentMiddleware(html_app(PAGE), secret_key=SECRET, consent_mode=False)).get("/").text
    assert "gtag('consent'" not in page
    assert page.startswith("<!doctype html><html><head><script src='/app.js'>")


def test_snippet_is_absent_without_a_google_service() -> None:
    page = TestClient(ConsentMiddleware(html_app(PAGE), secret_key=SECRET, services=[])).get("/").text
    assert "gtag('consent'" not in page
