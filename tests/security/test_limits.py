"""Oversized and malformed requests: headers, cookies, bodies, paths (SECURITY.md §7).

Each is a 4xx that says what was wrong (413 for a body over 16 KiB), or is read as "no consent";
never a 500 (the TestClient re-raises any exception the middleware lets out).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from consent_middleware.endpoints import MAX_BODY_BYTES
from tests.conftest import body_of, drive, http_scope
from tests.security.helpers import (
    OPTIONAL,
    SAME_ORIGIN,
    VISITOR,
    assert_no_consent,
    client,
    consent_cookie_set,
    forge,
    middleware,
    payload,
)

FORM_TYPE = "application/x-www-form-urlencoded"
POST_ROUTES = ("/_consent", "/_consent/withdraw")
KB100 = 100_000


@pytest.fixture
def visitor() -> TestClient:
    return client(consent_log=None)


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (FORM_TYPE, b"decision=accept_all&pad=" + b"x" * 40_000),
        ("application/json", json.dumps({"decision": "accept_all", "pad": "x" * 40_000}).encode()),
        (FORM_TYPE, b"decision=accept_all&pad=" + b"x" * (MAX_BODY_BYTES - 23)),  # one byte over
    ],
    ids=["form", "json", "one-byte-over"],
)
def test_body_over_16_kib_is_a_413_with_a_message(
    visitor: TestClient, route: str, content_type: str, body: bytes
) -> None:
    assert len(body) == MAX_BODY_BYTES + 1 or len(body) > 40_000
    response = visitor.post(route, content=body, headers={**SAME_ORIGIN, "Content-Type": content_type})
    assert response.status_code == 413
    assert "too large" in response.text
    assert str(MAX_BODY_BYTES) in response.text
    assert not consent_cookie_set(response)


def test_a_body_of_exactly_16_kib_is_read(visitor: TestClient) -> None:
    body = b"decision=accept_all&pad=" + b"x" * (MAX_BODY_BYTES - 24)
    assert len(body) == MAX_BODY_BYTES
    response = visitor.post(
        "/_consent", content=body, headers={**SAME_ORIGIN, "Content-Type": FORM_TYPE}, follow_redirects=False
    )
    assert response.status_code == 303


def test_streamed_body_over_the_limit_is_a_413_without_content_length(visitor: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 4096

    response = visitor.post("/_consent", content=chunks(), headers={**SAME_ORIGIN, "Content-Type": FORM_TYPE})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "declared",
    [b"10", b"0", b"-1", b"abc", b"\xb2", b"1e3", b" 12 ", b"99999999999999999999999999", b"0x10"],
)
@pytest.mark.anyio
async def test_a_lying_or_malformed_content_length_cannot_smuggle_a_big_body(declared: bytes) -> None:
    """What counts is the bytes received; a declared length is only a shortcut to refuse early."""
    scope = http_scope(
        "/_consent",
        "POST",
        [
            (b"origin", b"http://testserver"),
            (b"content-type", FORM_TYPE.encode()),
            (b"content-length", declared),
        ],
    )
    messages = await drive(middleware(consent_log=None), scope, b"decision=accept_all&pad=" + b"x" * 40_000)
    assert messages[0]["status"] == 413


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        (FORM_TYPE, b"&".join(b"categories=analytics" for _ in range(65)) + b"&decision=custom", 400),
        ("application/json", b"[" * 8000 + b"]" * 8000, 400),
        ("application/json", b'{"decision":' * 1200 + b"1" + b"}" * 1200, 400),
        ("application/json", b'{"decision": ' + b"9" * 10_000 + b"}", 400),
        ("application/json", b'{"decision": "' + b"x" * 15_000 + b'"}', 400),
        (
            "application/json",
            json.dumps({"decision": "custom", "categories": ["analytics"] * 1200}).encode(),
            200,
        ),
        (FORM_TYPE, b"decision=" + b"%ff" * 5000, 400),
        ("application/json", b'"' + b"\\u0000" * 2500 + b'"', 400),
    ],
    ids=[
        "65-form-fields",
        "deep-json-arrays",
        "deep-json-objects",
        "huge-json-number",
        "long-decision",
        "many-repeated-categories",
        "invalid-utf8-form",
        "json-string",
    ],
)
def test_oversized_or_hostile_bodies_within_the_limit_are_4xx_that_say_why(
    visitor: TestClient, content_type: str, body: bytes, status: int
) -> None:
    assert len(body) <= MAX_BODY_BYTES
    response = visitor.post("/_consent", content=body, headers={**SAME_ORIGIN, "Content-Type": content_type})
    assert response.status_code == status, response.text
    if status == 400:
        assert response.text.strip()
        assert len(response.text) < 1000  # the echoed value is shortened


def test_a_validly_signed_but_oversized_consent_cookie_is_not_consent() -> None:
    long = forge(payload((*OPTIONAL, *(secrets.token_hex(8) for _ in range(80)))))
    assert len(long) > 1024
    visitor = client()
    visitor.cookies.set("consent", long)
    assert_no_consent(visitor)


@pytest.mark.parametrize(
    "cookie",
    [
        "a=1; " * 20_000,
        "consent=" + "A" * KB100,
        ";" * KB100,
        "=" * KB100,
        "consent=" + forge(payload()) + "; " + "x=1; " * 20_000,
        "x=1; " * 20_000 + "consent=" + "A" * 2000,
    ],
    ids=["many-cookies", "huge-consent", "semicolons", "equals", "valid-then-junk", "junk-then-huge"],
)
def test_a_100_kb_cookie_header_is_read_without_error(cookie: str) -> None:
    visitor = client()
    page = visitor.get("/", headers={"Cookie": cookie[:KB100]})
    assert page.status_code == 200
    state = visitor.get("/_consent", headers={"Cookie": cookie[:KB100]})
    assert state.status_code == 200
    if "consent=A" in cookie or not cookie.startswith("consent="):
        assert state.json()["decided"] is False


@pytest.mark.parametrize(
    "name", ["Accept-Language", "User-Agent", "Referer", "Origin", "Sec-GPC", "Host", "X-Forwarded-Host"]
)
@pytest.mark.parametrize("path", ["/", "/_consent", "/_consent/preferences", "/_consent/cookies"])
def test_100_kb_request_headers_are_handled(name: str, path: str) -> None:
    visitor = TestClient(middleware(trusted_proxies=[VISITOR[0]]), client=VISITOR)
    response = visitor.get(path, headers={name: "a" * KB100})
    assert response.status_code == 200
    assert response.headers.get("content-language", "en") == "en"


@pytest.mark.parametrize("name", ["Referer", "Origin"])
def test_100_kb_origin_or_referer_on_a_post_is_a_403(visitor: TestClient, name: str) -> None:
    response = visitor.post(
        "/_consent", data={"decision": "accept_all"}, headers={name: "http://e/" + "a" * KB100}
    )
    assert response.status_code == 403
    assert len(response.text) < 1000


@pytest.mark.parametrize(
    ("path", "query", "status"),
    [
        ("/", "x=" + "a" * KB100 + "&lang=nl", 200),
        ("/_consent/preferences", "next=/" + "a" * KB100, 200),
        ("/_consent", "lang=" + "a" * KB100, 200),
        ("/" + "a" * KB100, "", 200),
        ("/_consent/static/" + "a" * KB100, "", 404),
        ("/_consent/" + "a" * KB100, "", 404),
    ],
    ids=["page-query", "next", "lang", "page-path", "static-path", "prefix-path"],
)
@pytest.mark.anyio
async def test_100_kb_query_and_path_are_handled(path: str, query: str, status: int) -> None:
    scope = http_scope(path, query_string=query.encode())
    messages = await drive(middleware(), scope)
    assert messages[0]["status"] == status
    if path == "/":
        assert b'lang="en" role="dialog"' in body_of(messages)  # a query this long is not searched
