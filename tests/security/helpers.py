"""What the security suite shares: a probe site that prints what the app was told, an attacker's
cookie forge, and the checks every attack ends with (SECURITY.md is the threat model these test).
"""

from __future__ import annotations

import re
import time
from typing import Any

from itsdangerous import URLSafeSerializer
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consent_middleware import ConsentMiddleware, Service
from consent_middleware.state import COOKIE_SALT
from tests.conftest import ORIGIN, SECRET, html_page

SAME_ORIGIN = {"Origin": ORIGIN}
OPTIONAL = ("preferences", "analytics", "marketing")
MAX_AGE = 182 * 24 * 3600

GA_SRC = "https://www.googletagmanager.com/gtag/js?id=G-ABC123"
GA_SCRIPT = f'<script async src="{GA_SRC}"></script>'
GATED_GA = f'<script data-consent="analytics" type="text/plain" async src="{GA_SRC}"></script>'
YOUTUBE = Service(
    name="youtube", category="marketing", provider="Google Ireland Limited", hosts=("youtube.com",)
)
YOUTUBE_IFRAME = '<iframe src="https://www.youtube.com/embed/x"></iframe>'
BANNER = 'id="consent-banner"'


def probe_app() -> ASGIApp:
    """A page with a GA tag and a YouTube iframe, printing what the middleware told the app."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        consent = scope["state"]["consent"]
        granted = ",".join(name for name, on in consent.categories.items() if on)
        client = scope["client"][0] if scope.get("client") else None
        seen = (
            f'<p id="seen">decided={consent.decided} granted={granted} '
            f"device={consent.device is not None} client_ip={consent.client_ip} client={client}</p>"
        )
        body = html_page(seen + GA_SCRIPT + YOUTUBE_IFRAME)
        headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def middleware(app: ASGIApp | None = None, **options: Any) -> ConsentMiddleware:
    """The middleware on the probe site; the consent log is the default SQLite file (in tmp_path)."""
    options.setdefault("secret_key", SECRET)
    options.setdefault("services", ["google-analytics", YOUTUBE])
    return ConsentMiddleware(probe_app() if app is None else app, **options)


#: The visitor's address; before device consent the app sees it as 203.0.113.0.
VISITOR = ("203.0.113.7", 50000)


def client(app: ASGIApp | None = None, **options: Any) -> TestClient:
    return TestClient(middleware(app, **options), client=VISITOR)


def payload(
    categories: tuple[str, ...] = OPTIONAL,
    *,
    consent_id: str = "0123456789abcdef0123456789abcdef",
    version: str = "1",
    decided_at: int | None = None,
    method: int = 0,
) -> list[object]:
    """A decision as the cookie stores it (the format is public: this is open source)."""
    when = int(time.time()) if decided_at is None else decided_at
    return [consent_id, version, sorted(categories), when, method]


def forge(data: object, *, key: str = SECRET, salt: str = COOKIE_SALT) -> str:
    return URLSafeSerializer(key, salt=salt).dumps(data)


def set_cookies(response: Any) -> list[str]:
    values: list[str] = response.headers.get_list("set-cookie")
    return values


def consent_cookie_set(response: Any) -> bool:
    return any(value.startswith("consent=") for value in set_cookies(response))


def assert_no_consent(client: TestClient) -> None:
    """Nothing is treated as consent: the app is told nothing was granted, the banner shows, GA and
    the iframe stay inert, the JSON state says undecided, and no consent cookie is (re)issued."""
    page = client.get("/")
    assert page.status_code == 200
    assert "decided=False granted=necessary device=False client_ip=None client=203.0.113.0" in page.text
    assert BANNER in page.text
    assert GATED_GA in page.text
    assert GA_SCRIPT not in page.text
    assert 'data-consent-src="https://www.youtube.com/embed/x"' in page.text
    assert not consent_cookie_set(page)
    state = client.get("/_consent")
    assert state.json()["decided"] is False
    assert state.json()["categories"] == {"necessary": True, **dict.fromkeys(OPTIONAL, False)}
    assert not consent_cookie_set(state)


def assert_consent(client: TestClient, granted: tuple[str, ...] = OPTIONAL) -> None:
    page = client.get("/")
    shown = ",".join(("necessary", *[name for name in OPTIONAL if name in granted]))
    assert f"decided=True granted={shown} " in page.text
    assert BANNER not in page.text
    assert (GA_SCRIPT in page.text) == ("analytics" in granted)


def header_lines(messages: list[Message]) -> list[tuple[bytes, bytes]]:
    start = next(m for m in messages if m["type"] == "http.response.start")
    return [(bytes(name), bytes(value)) for name, value in start["headers"]]


#: What a header name or value must never hold: a line break, a NUL, another control character.
CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def assert_headers_intact(messages: list[Message], *, injected: bytes = b"x-injected") -> None:
    """No header splitting: no control characters in any header, no header or cookie the attacker
    named (the text "X-Injected" may remain inside a percent-encoded path: that splits nothing)."""
    for name, value in header_lines(messages):
        assert not CONTROL.search(name), name
        assert not CONTROL.search(value), (name, value)
        assert name.lower() != injected
        if name.lower() == b"set-cookie":
            assert not value.lower().startswith(b"pwned"), value
            assert b"domain=evil" not in value.lower(), value


def hashed_asset_names() -> tuple[str, str]:
    """The content-hashed names of the banner script and stylesheet, as a page links them."""
    page = TestClient(middleware(consent_log=None)).get("/").text
    js = re.search(r"/_consent/static/(banner\.[0-9a-f]{12}\.js)", page)
    css = re.search(r"/_consent/static/(banner\.[0-9a-f]{12}\.css)", page)
    assert js is not None
    assert css is not None
    return js.group(1), css.group(1)
