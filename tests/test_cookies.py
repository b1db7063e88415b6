"""Cookie rules: refused categories' cookies are neither set, nor seen by the app, nor kept."""

from __future__ import annotations

from typing import Any

import httpx2 as httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from consent_middleware import ConsentMiddleware, Cookie, Service
from tests.conftest import ORIGIN, SECRET

VIDEO = Service(name="video", category="marketing", hosts=("video.example",), cookies=(Cookie("vid"),))


def setting_app(**options: Any) -> ConsentMiddleware:
    """Sets an analytics cookie (exact and glob), a marketing cookie and an undeclared one."""

    async def page(request: Request) -> Response:
        response = HTMLResponse("<html><body>hi</body></html>")
        for name in ("_ga", "_ga_ABC123", "vid", "cart"):
            response.set_cookie(name, "1", httponly=name == "_ga")
        return response

    return ConsentMiddleware(
        Starlette(routes=[Route("/", page)]),
        secret_key=SECRET,
        services=["google-analytics", VIDEO],
        **options,
    )


def set_names(response: httpx.Response) -> list[str]:
    headers = response.headers.get_list("set-cookie")
    return [header.split("=", 1)[0] for header in headers]


def test_refused_cookies_are_not_set_before_consent() -> None:
    response = TestClient(setting_app()).get("/")
    assert set_names(response) == ["cart"]


def test_granted_categories_cookies_are_set() -> None:
    client = TestClient(setting_app())
    client.post(
        "/_consent", json={"decision": "custom", "categories": ["analytics"]}, headers={"Origin": ORIGIN}
    )
    assert set_names(client.get("/")) == ["_ga", "_ga_ABC123", "cart"]


def test_accept_all_lets_every_declared_cookie_through() -> None:
    client = TestClient(setting_app())
    client.post("/_consent", json={"decision": "accept_all"}, headers={"Origin": ORIGIN})
    assert set_names(client.get("/")) == ["_ga", "_ga_ABC123", "vid", "cart"]


def test_unknown_cookies_are_dropped_when_asked() -> None:
    client = TestClient(setting_app(block_unknown_cookies=True))
    client.post("/_consent", json={"decision": "accept_all"}, headers={"Origin": ORIGIN})
    assert set_names(client.get("/")) == ["_ga", "_ga_ABC123", "vid"]


def test_the_middlewares_own_cookies_are_never_blocked() -> None:
    response = TestClient(setting_app(block_unknown_cookies=True)).get("/?lang=nl")
    assert set_names(response) == ["consent_lang"]


def test_app_does_not_see_refused_cookies() -> None:
    async def echo(request: Request) -> Response:
        return JSONResponse({"cookie": request.headers.get("cookie")})

    app = ConsentMiddleware(Starlette(routes=[Route("/", echo)]), secret_key=SECRET)
    client = TestClient(app)
    header = {"Cookie": "_ga=GA1.1.1; cart=2; _gid=3; _ga_X=4"}
    assert client.get("/", headers=header).json() == {"cookie": "cart=2"}
    only_ga = {"Cookie": "_ga=GA1.1.1"}
    assert client.get("/", headers=only_ga).json() == {"cookie": None}


def test_app_sees_granted_cookies() -> None:
    async def echo(request: Request) -> Response:
        return JSONResponse({"ga": request.cookies.get("_ga"), "cart": request.cookies.get("cart")})

    client = TestClient(ConsentMiddleware(Starlette(routes=[Route("/", echo)]), secret_key=SECRET))
    client.post("/_consent", json={"decision": "accept_all"}, headers={"Origin": ORIGIN})
    client.cookies.set("_ga", "GA1.1.1")
    client.cookies.set("cart", "2")
    assert client.get("/").json() == {"ga": "GA1.1.1", "cart": "2"}


def expired(response: httpx.Response) -> list[str]:
    headers = response.headers.get_list("set-cookie")
    return [header for header in headers if "Max-Age=0" in header]


def test_withdrawal_expires_refused_cookies_on_host_and_parent_domains() -> None:
    client = TestClient(setting_app(), base_url="http://www.example.be")
    origin = {"Origin": "http://www.example.be"}
    client.post("/_consent", json={"decision": "accept_all"}, headers=origin)
    client.cookies.set("_ga", "1", domain=".example.be")
    client.cookies.set("_ga_ABC123", "1", domain=".example.be")
    client.cookies.set("cart", "1", domain="www.example.be")
    response = client.post("/_consent/withdraw", json={}, headers=origin)
    assert sorted(expired(response)) == sorted(
        f"{name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/{domain}"
        for name in ("_ga", "_ga_ABC123")
        for domain in ("", "; Domain=www.example.be", "; Domain=example.be")
    )
    assert client.get("/_consent").json()["decided"] is True


def test_narrowing_expires_only_the_newly_refused_category() -> None:
    client = TestClient(setting_app())
    client.post("/_consent", json={"decision": "accept_all"}, headers={"Origin": ORIGIN})
    client.cookies.set("_ga", "1")
    client.cookies.set("vid", "1")
    response = client.post(
        "/_consent", json={"decision": "custom", "categories": ["analytics"]}, headers={"Origin": ORIGIN}
    )
    assert [header.split("=")[0] for header in expired(response)] == ["vid"]


def test_expiry_is_secure_over_https() -> None:
    client = TestClient(setting_app(), base_url="https://testserver")
    client.cookies.set("_ga", "1")
    response = client.post("/_consent/withdraw", json={}, headers={"Origin": "https://testserver"})
    assert expired(response) == ["_ga=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; Secure"]


def test_cookie_names_that_are_not_tokens_are_never_echoed() -> None:
    client = TestClient(setting_app())
    response = client.post(
        "/_consent/withdraw", json={}, headers={"Origin": ORIGIN, "Cookie": "_ga_<x>=1; _ga_a b=2"}
    )
    assert expired(response) == []
