"""CRLF and header injection through every value that reaches a response header (SECURITY.md §5).

Driven as raw ASGI, so a value holds exactly the bytes under test (a lax server may pass what an
HTTP client would refuse to send). After every attack: no control character in any header, no header
the attacker named, and no cookie the attacker named.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consent_middleware import ConsentMiddleware, Service
from tests.conftest import SECRET, drive, headers_of, http_scope
from tests.security.helpers import YOUTUBE, assert_headers_intact, header_lines, middleware, probe_app

pytestmark = pytest.mark.anyio

FORM = (b"content-type", b"application/x-www-form-urlencoded")
SAME_ORIGIN = (b"origin", b"http://testserver")

#: As they arrive in ``next`` once the form body is decoded.
NEXT_VALUES = [
    "/\r\nSet-Cookie: pwned=1",
    "/\r\nX-Injected: 1",
    "/\rX-Injected: 1",
    "/\nX-Injected: 1",
    "/\r\n\r\n<script>alert(1)</script>",
    "/%0d%0aX-Injected:%201",
    "/%0D%0ASet-Cookie:%20pwned=1",
    "/%E5%98%8A%E5%98%8DX-Injected:%201",
    "/\u560a\u560dX-Injected: 1",  # "嘊嘍": servers that keep the low byte read CR LF
    "/\u2028X-Injected: 1",
    "/\u2029X-Injected: 1",
    "/\x85X-Injected: 1",
    "/\x00X-Injected: 1",
    "/\x0bX-Injected: 1",
]


async def post_form(app: ASGIApp, fields: dict[str, str], *headers: tuple[bytes, bytes]) -> list[Message]:
    body = urlencode(fields).encode()
    scope = http_scope("/_consent", "POST", [FORM, *headers, (b"content-length", b"%d" % len(body))])
    return await drive(app, scope, body)


def location(messages: list[Message]) -> bytes:
    (value,) = [value for name, value in header_lines(messages) if name == b"location"]
    return value


@pytest.mark.parametrize("value", NEXT_VALUES)
async def test_next_cannot_split_the_location_header(value: str) -> None:
    messages = await post_form(
        middleware(consent_log=None), {"decision": "reject_all", "next": value}, SAME_ORIGIN
    )
    assert messages[0]["status"] == 303
    assert_headers_intact(messages)
    assert location(messages).startswith(b"/")
    assert location(messages).isascii()  # anything else is percent-encoded
    assert [name for name, _ in header_lines(messages)].count(b"set-cookie") == 1


@pytest.mark.parametrize(
    "referer",
    [
        b"http://testserver/a%0d%0aX-Injected:%201",
        b"http://testserver/a\r\nX-Injected: 1",
        b"http://testserver/a\nSet-Cookie: pwned=1",
        b"http://testserver/\xe5\x98\x8a\xe5\x98\x8dX-Injected: 1",
    ],
)
async def test_the_referer_path_cannot_split_the_location_header(referer: bytes) -> None:
    messages = await post_form(
        middleware(consent_log=None), {"decision": "reject_all"}, SAME_ORIGIN, (b"referer", referer)
    )
    assert messages[0]["status"] == 303
    assert_headers_intact(messages)
    assert location(messages).startswith(b"/")
    assert location(messages).isascii()


LANG_VALUES = [
    "en\r\nX-Injected: 1",
    "nl\r\nSet-Cookie: pwned=1",
    "nl\nX-Injected: 1",
    "nl; Domain=evil.com",
    "nl;Max-Age=999999999",
    "nl,pwned=1",
    "nl pwned=1",
    "nl\x00",
    "nl\u2028",
    "NL\r\n",
]


@pytest.mark.parametrize("path", ["/", "/_consent", "/_consent/cookies", "/_consent/preferences"])
@pytest.mark.parametrize("lang", LANG_VALUES)
async def test_lang_cannot_reach_set_cookie_or_content_language(path: str, lang: str) -> None:
    scope = http_scope(path, query_string=("lang=" + quote(lang, safe="")).encode())
    messages = await drive(middleware(), scope)
    assert messages[0]["status"] == 200
    assert_headers_intact(messages)
    assert not any(value.startswith("consent_lang=") for value in headers_of(messages).get("set-cookie", []))
    assert headers_of(messages).get("content-language", ["en"]) == ["en"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"accept-language", b"nl\r\nX-Injected: 1"),
        (b"accept-language", b"nl;q=1\r\nSet-Cookie: pwned=1, fr"),
        (b"accept-language", b"x-injected"),
        (b"cookie", b"consent_lang=nl\r\nX-Injected: 1"),
        (b"cookie", b"consent_lang=nl; Domain=evil.com; consent=\r\nX-Injected: 1"),
        (b"user-agent", b"Mozilla/5.0\r\nX-Injected: 1"),
        (b"sec-gpc", b"1\r\nX-Injected: 1"),
        (b"host", b"testserver\r\nX-Injected: 1"),
        (b"x-forwarded-host", b"evil.com\r\nX-Injected: 1"),
        (b"x-forwarded-proto", b"https\r\nX-Injected: 1"),
        (b"forwarded", b'for=1.2.3.4;host="evil.com\r\nX-Injected: 1";proto=https'),
    ],
)
@pytest.mark.parametrize("path", ["/", "/_consent", "/_consent/preferences", "/_consent/cookies"])
async def test_request_headers_never_reach_a_response_header(name: bytes, value: bytes, path: str) -> None:
    app = middleware(trusted_proxies=["203.0.113.0/24"])  # X-Forwarded-* and Forwarded are read
    messages = await drive(app, http_scope(path, headers=[(name, value)]))
    assert messages[0]["status"] == 200
    assert_headers_intact(messages)


@pytest.mark.parametrize(
    "cookie",
    [
        b"_ga_x\r\nX-Injected: 1=1; _ga=GA1.1",
        b"_ga_x\nSet-Cookie: pwned=1=1; _ga=GA1.1",
        b"_ga_a,Domain=evil.com=1; _ga=GA1.1",
        b"_ga_<script>=1; _ga=GA1.1",
        b"_ga_x Domain=evil.com=1; _ga=GA1.1",
    ],
)
@pytest.mark.parametrize("host", [b"testserver", b"www.example.com\r\nX-Injected: 1", b"evil.com; Domain=x"])
async def test_withdrawal_expires_only_well_formed_cookie_names_on_well_formed_hosts(
    cookie: bytes, host: bytes
) -> None:
    """Withdrawing echoes the refused cookie names and the host into ``Set-Cookie`` headers."""
    scope = http_scope("/_consent/withdraw", "POST", [(b"cookie", cookie), FORM])
    scope["headers"] = [(b"host", host), *scope["headers"][1:]]
    messages = await drive(middleware(consent_log=None), scope)
    assert messages[0]["status"] == 303
    assert_headers_intact(messages)
    expired = [value for value in headers_of(messages)["set-cookie"] if "Max-Age=0" in value]
    assert expired  # _ga itself is expired...
    assert all(value.startswith("_ga=;") for value in expired)  # ...and nothing else named
    assert all("evil" not in value for value in headers_of(messages)["set-cookie"])


async def test_trusted_forwarded_host_with_a_line_break_is_not_believed() -> None:
    scope = http_scope(
        "/_consent/withdraw",
        "POST",
        [(b"cookie", b"_ga=GA1.1"), (b"x-forwarded-host", b"www.example.com\r\nX-Injected: 1"), FORM],
    )
    messages = await drive(middleware(consent_log=None, trusted_proxies=["203.0.113.7"]), scope)
    assert_headers_intact(messages)
    assert all("example.com" not in value for value in headers_of(messages)["set-cookie"])


def with_state(app: ASGIApp, **state: Any) -> ASGIApp:
    """An outer layer (or the server) that puts values in ``scope["state"]`` before the middleware."""

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"] = {**scope.get("state", {}), **state}
        await app(scope, receive, send)

    return outer


def setting_nonce(nonce: str) -> ASGIApp:
    """An app that puts its own (hostile) CSP nonce in ``scope["state"]`` while it answers."""
    inner = probe_app()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"]["csp_nonce"] = nonce
        await inner(scope, receive, send)

    return app


HOSTILE_NONCES = [
    "abcdefgh\r\nX-Injected: 1",
    "abcdefgh\nSet-Cookie: pwned=1",
    "abcdefgh' 'unsafe-inline",
    "abcdefgh'; script-src *",
    'abcdefgh"><script>alert(1)</script>',
    "abcdefgh\x00",
]


@pytest.mark.parametrize("nonce", HOSTILE_NONCES)
@pytest.mark.parametrize("where", ["before-the-middleware", "set-by-the-app"])
async def test_a_hostile_csp_nonce_is_never_used(nonce: str, where: str) -> None:
    csp = {"script-src": ["'self'"]}
    if where == "before-the-middleware":
        app = with_state(middleware(csp=csp), csp_nonce=nonce)
    else:
        app = middleware(setting_nonce(nonce), csp=csp)
    messages = await drive(app, http_scope("/"))
    assert_headers_intact(messages)
    (policy,) = headers_of(messages)["content-security-policy"]
    assert "unsafe-inline" not in policy
    assert "script-src *" not in policy
    assert nonce not in policy
    page = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    assert nonce.encode() not in page
    assert b"<script>alert(1)</script>" not in page


@pytest.mark.parametrize("nonce", HOSTILE_NONCES)
async def test_a_hostile_nonce_is_not_echoed_into_the_middlewares_own_pages(nonce: str) -> None:
    messages = await drive(with_state(middleware(), csp_nonce=nonce), http_scope("/_consent/preferences"))
    assert_headers_intact(messages)
    page = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    assert b"nonce=" not in page


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("cookie_domain", ".example.com\r\nX-Injected: 1"),
        ("cookie_domain", "example.com; Domain=evil.com"),
        ("cookie_domain", "example.com\n"),
        ("cookie_domain", "example.com\x00"),
        ("prefix", "/_consent\r\nX-Injected: 1"),
        ("prefix", "/_consent\n"),
        ("policy_version", "1\r\nX-Injected: 1"),
        ("csp", {"script-src": ["'self'\r\nX-Injected: 1"]}),
        ("csp", {"script-src": ["'self'\n"]}),
        ("csp", {"script-src": ["'self'\x00"]}),
        ("csp", {"script-src": ["'self'\x7f"]}),
        ("csp", {"script-src": ["https://\u00e9vil.example"]}),
        ("csp", {"script-src": ["https://\u20acvil.example"]}),
        ("csp", {"script-src": ["'self'; script-src *"]}),
        ("csp", {"script-src": ["'self',script-src"]}),
        ("csp", {"script-src\r\nX-Injected: 1": ["'self'"]}),
        ("services", [{"name": "x", "category": "marketing", "hosts": ["evil.com\r\nX-Injected: 1"]}]),
        ("services", [{"name": "x", "category": "marketing", "hosts": ["evil.com; script-src *"]}]),
    ],
)
def test_config_values_that_reach_headers_are_refused_at_start_up(option: str, value: object) -> None:
    options: dict[str, Any] = {option: value}
    with pytest.raises(ValueError, match=option.rstrip("s")):
        ConsentMiddleware(probe_app(), secret_key=SECRET, **options)


def test_declared_hosts_with_a_line_break_are_refused() -> None:
    with pytest.raises(ValueError, match="host"):
        Service(name="x", category="marketing", hosts=("evil.com\r\nX-Injected: 1",))


async def test_a_valid_configuration_still_sends_clean_headers() -> None:
    app = middleware(cookie_domain=".testserver", csp={"script-src": ["'self'", "https://cdn.example"]})
    messages = await drive(app, http_scope("/", query_string=b"lang=nl"))
    assert_headers_intact(messages)
    assert any(
        value.startswith("consent_lang=nl;") and "Domain=.testserver" in value
        for value in headers_of(messages)["set-cookie"]
    )
    assert YOUTUBE.hosts[0] not in headers_of(messages)["content-security-policy"][0]  # not granted
