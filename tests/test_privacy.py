"""Device data and the full IP are withheld from the app until the device category is granted."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from consent_middleware import ConsentMiddleware
from consent_middleware.privacy import truncate_ip
from tests.conftest import ORIGIN, SECRET, html_page
from tests.geodata import BELGIAN_IP, write_country_db

CHROME = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
REVEALING = {
    "User-Agent": CHROME,
    "Sec-CH-UA": '"Chromium";v="124"',
    "Sec-CH-UA-Platform": '"iOS"',
    "Sec-CH-UA-Mobile": "?1",
    "X-Forwarded-For": "192.0.2.1",
    "Forwarded": "for=192.0.2.1",
    "X-Real-IP": "192.0.2.1",
}


async def what_the_app_sees(request: Request) -> Response:
    consent = request.state.consent
    device = consent.device
    return JSONResponse(
        {
            "client": list(request.scope["client"]) if request.scope.get("client") else None,
            "headers": {name: value for name, value in request.headers.items() if name != "cookie"},
            "device": None
            if device is None
            else {
                "browser": device.browser,
                "os": device.os,
                "is_mobile": device.is_mobile,
                "is_bot": device.is_bot,
            },
            "client_ip": consent.client_ip,
            "country": consent.country,
            "security_client_ip": consent.security_client_ip,
        }
    )


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = Starlette(
        routes=[Route("/", what_the_app_sees), Route("/page", lambda r: HTMLResponse(html_page()))]
    )
    db = write_country_db(tmp_path / "c.mmdb")
    return TestClient(
        ConsentMiddleware(app, secret_key=SECRET, geoip_database=db), client=(BELGIAN_IP, 51234)
    )


def test_before_consent_the_app_sees_neither_the_ip_nor_the_device(client: TestClient) -> None:
    # Twice: the second request's header names are a shape the middleware knows (its fast path).
    for _ in range(2):
        seen = client.get("/", headers=REVEALING).json()
        assert seen["client"] == ["81.246.10.0", 0]
        assert seen["headers"]["user-agent"] == "Mozilla/5.0 (withheld until consent)"
        assert not {
            "sec-ch-ua",
            "sec-ch-ua-platform",
            "sec-ch-ua-mobile",
            "x-forwarded-for",
            "forwarded",
            "x-real-ip",
        } & set(seen["headers"])
        assert seen["device"] is None
        assert seen["client_ip"] is None
        assert seen["country"] is None
        assert seen["security_client_ip"] == BELGIAN_IP  # for rate limiting and abuse defence only


def test_after_consent_the_app_sees_both(client: TestClient) -> None:
    client.post(
        "/_consent", json={"decision": "custom", "categories": ["analytics"]}, headers={"Origin": ORIGIN}
    )
    seen = client.get("/", headers=REVEALING).json()
    assert seen["client"] == [BELGIAN_IP, 51234]
    assert seen["headers"]["user-agent"] == CHROME
    assert seen["headers"]["sec-ch-ua-platform"] == '"iOS"'
    assert seen["device"] == {"browser": "Mobile Safari", "os": "iOS", "is_mobile": True, "is_bot": False}
    assert seen["client_ip"] == BELGIAN_IP
    assert seen["country"] == "BE"


def test_other_categories_do_not_unlock_device_data(client: TestClient) -> None:
    client.post(
        "/_consent",
        json={"decision": "custom", "categories": ["marketing", "preferences"]},
        headers={"Origin": ORIGIN},
    )
    seen = client.get("/", headers=REVEALING).json()
    assert seen["client"] == ["81.246.10.0", 0]
    assert seen["device"] is None


def test_device_category_is_configurable(tmp_path: Path) -> None:
    app = ConsentMiddleware(
        Starlette(routes=[Route("/", what_the_app_sees)]), secret_key=SECRET, device_category="marketing"
    )
    client = TestClient(app, client=(BELGIAN_IP, 1))
    client.post(
        "/_consent", json={"decision": "custom", "categories": ["analytics"]}, headers={"Origin": ORIGIN}
    )
    assert client.get("/", headers=REVEALING).json()["device"] is None
    client.post(
        "/_consent", json={"decision": "custom", "categories": ["marketing"]}, headers={"Origin": ORIGIN}
    )
    assert client.get("/", headers=REVEALING).json()["device"] is not None


def test_client_hints_are_asked_for_only_after_consent(client: TestClient) -> None:
    assert "accept-ch" not in client.get("/page").headers
    client.post("/_consent", json={"decision": "accept_all"}, headers={"Origin": ORIGIN})
    assert client.get("/page").headers["accept-ch"] == "Sec-CH-Viewport-Width, Sec-CH-DPR"


def test_withheld_headers_are_configurable(tmp_path: Path) -> None:
    app = ConsentMiddleware(
        Starlette(routes=[Route("/", what_the_app_sees)]),
        secret_key=SECRET,
        withheld_headers=["x-real-ip", "x-client-geo"],
    )
    seen = TestClient(app).get("/", headers={**REVEALING, "X-Client-Geo": "BE"}).json()["headers"]
    assert "x-client-geo" not in seen
    assert "x-real-ip" not in seen
    assert seen["x-forwarded-for"] == "192.0.2.1"


@pytest.mark.parametrize(
    ("address", "truncated"),
    [("203.0.113.77", "203.0.113.0"), ("2001:db8:abcd:12:34::1", "2001:db8:abcd::"), ("bad", None)],
)
def test_truncation(address: str, truncated: str | None) -> None:
    assert truncate_ip(address) == truncated


def test_bots_get_no_banner_but_stay_gated(client: TestClient) -> None:
    page = client.get("/page", headers={"User-Agent": GOOGLEBOT})
    assert b'id="consent-banner"' not in page.content
    assert b'id="consent-banner"' in client.get("/page", headers={"User-Agent": CHROME}).content


@given(lang=st.text(max_size=40), accept=st.binary(max_size=300))
def test_any_lang_and_accept_language_never_fail_a_request(lang: str, accept: bytes) -> None:
    header = accept.replace(b"\r", b"").replace(b"\n", b"")
    response = TestClient(APP).get("/", params={"lang": lang}, headers=[(b"accept-language", header)])
    assert response.status_code == 200


APP = ConsentMiddleware(
    Starlette(routes=[Route("/", lambda r: HTMLResponse(html_page()))]), secret_key=SECRET
)
