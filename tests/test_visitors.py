"""Requests with the same identifying headers share what they say about the visitor, and no more."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from consent_middleware import ConsentMiddleware
from consent_middleware import request as request_module
from consent_middleware import state as state_module
from consent_middleware.cookies import CookieRules
from consent_middleware.privacy import (
    GENERIC_USER_AGENT,
    MAX_SHAPE_BYTES,
    MAX_SHAPES,
    HeaderReducer,
    reduce_headers,
)
from consent_middleware.state import Decision, DecisionCodec, new_consent_id
from tests.conftest import SECRET, body_of, drive, html_app, http_scope

WITHHELD = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})


async def consent_of(request: Request) -> Response:
    consent = request.state.consent
    return JSONResponse({"decided": consent.decided, "language": consent.language, "id": id(consent)})


def client_for(tmp_path: Path) -> tuple[TestClient, ConsentMiddleware]:
    middleware = ConsentMiddleware(
        Starlette(routes=[Route("/", consent_of)]),
        secret_key=SECRET,
        consent_log=f"sqlite:///{tmp_path / 'log.db'}",
        geoip_database=None,
    )
    return TestClient(middleware), middleware


def cookie_of(middleware: ConsentMiddleware, decided_at: int) -> str:
    codec = DecisionCodec.for_config(middleware.config)
    version = middleware.config.policy_version
    return codec.encode(Decision(new_consent_id(), version, frozenset(), decided_at, "reject_all"))


def test_the_same_visitor_shares_one_read_only_state(tmp_path: Path) -> None:
    client, _ = client_for(tmp_path)
    first = client.get("/", headers={"Accept-Language": "fr"}).json()
    again = client.get("/", headers={"Accept-Language": "fr"}).json()
    other = client.get("/", headers={"Accept-Language": "de"}).json()
    assert first["id"] == again["id"] != other["id"]
    assert (first["language"], other["language"]) == ("fr", "de")


def test_the_consent_state_cannot_be_changed_by_the_app(tmp_path: Path) -> None:
    seen: list[str] = []

    async def meddle(request: Request) -> Response:
        for name in ("decision", "gpc", "version", "security_client_ip", "language"):
            try:
                setattr(request.state.consent, name, None)
            except AttributeError:
                seen.append(name)
        return JSONResponse({})

    client = TestClient(ConsentMiddleware(Starlette(routes=[Route("/", meddle)]), secret_key=SECRET))
    client.get("/")
    assert seen == ["decision", "gpc", "version", "security_client_ip", "language"]


def test_a_shared_decision_still_expires_on_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client, middleware = client_for(tmp_path)
    now = time.time()
    max_age = int(middleware.config.consent_max_age.total_seconds())
    cookie = cookie_of(middleware, int(now) - max_age + 60)  # a minute left
    client.cookies.set("consent", cookie)
    assert client.get("/").json()["decided"] is True
    later = SimpleNamespace(time=lambda: now + 120)
    monkeypatch.setattr(request_module, "time", later)
    monkeypatch.setattr(state_module, "time", later)
    assert client.get("/").json()["decided"] is False


def test_a_cookie_from_the_future_counts_once_its_time_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, middleware = client_for(tmp_path)
    now = time.time()
    client.cookies.set("consent", cookie_of(middleware, int(now) + 3600))
    assert client.get("/").json()["decided"] is False
    later = SimpleNamespace(time=lambda: now + 3600)
    monkeypatch.setattr(request_module, "time", later)
    monkeypatch.setattr(state_module, "time", later)
    assert client.get("/").json()["decided"] is True


KNOWN_NAMES = [b"host", b"accept", b"user-agent", b"cookie", b"sec-ch-ua", b"sec-ch-ua-mobile", b"x-real-ip"]
HEADER_NAMES = st.sampled_from(KNOWN_NAMES) | st.binary(min_size=1, max_size=12).map(bytes.lower)
HEADERS = st.lists(st.tuples(HEADER_NAMES, st.binary(max_size=8)), max_size=12)


@given(requests=st.lists(HEADERS, min_size=1, max_size=6))
def test_the_header_reducer_reduces_as_reduce_headers_does(requests: list[list[tuple[bytes, bytes]]]) -> None:
    reducer = HeaderReducer(WITHHELD)
    for headers in requests * 2:  # the second time round, the names are known
        reduced = reducer.reduce(headers, dict(reversed(headers)))
        assert reduced == reduce_headers(headers, WITHHELD)
        assert all(value == GENERIC_USER_AGENT for name, value in reduced if name == b"user-agent")


def test_the_header_reducer_keeps_a_bounded_number_of_request_shapes() -> None:
    reducer = HeaderReducer(WITHHELD)
    long_name = b"x-" + b"a" * MAX_SHAPE_BYTES
    for number in range(MAX_SHAPES * 3):
        name = long_name if number % 2 else b"x-%d" % number
        headers = [(name, b"1"), (b"user-agent", b"Browser/1")]
        for _ in range(2):
            reduced = reducer.reduce(headers, dict(reversed(headers)))
            assert reduced == [(name, b"1"), (b"user-agent", GENERIC_USER_AGENT)]
    shapes = reducer._shapes
    assert 0 < len(shapes) <= MAX_SHAPES
    assert all(long_name not in shape for shape in shapes)


def recording_middleware() -> tuple[ConsentMiddleware, list[list[tuple[bytes, bytes]]]]:
    """The middleware in front of an app that keeps the headers of each request it gets."""
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(list(scope["headers"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return ConsentMiddleware(app, secret_key=SECRET, consent_log=None, geoip_database=None), seen


@pytest.mark.anyio
async def test_every_user_agent_is_withheld_when_a_refused_cookie_is_dropped_too() -> None:
    middleware, seen = recording_middleware()
    # A cookie the app may see: the names are known to pass from then on.
    await drive(middleware, http_scope(headers=[(b"user-agent", b"Browser/1"), (b"cookie", b"session=1")]))
    headers = [(b"user-agent", b"Browser/1"), (b"cookie", b"_ga=GA1.1.1.1"), (b"user-agent", b"Browser/2")]
    for _ in range(2):
        await drive(middleware, http_scope(headers=headers))
    for request in seen[1:]:
        assert [value for name, value in request if name == b"user-agent"] == [GENERIC_USER_AGENT] * 2
        assert not [value for name, value in request if name == b"cookie"]


COOKIE_PAIRS = st.sampled_from([b"_ga=GA1.1.1", b"_gid=2", b"cart=3", b" session=4", b"vid", b"", b"_ga_X=5"])
COOKIE_HEADERS = st.lists(COOKIE_PAIRS, max_size=4).map(b";".join)
REQUEST_HEADERS = st.lists(
    st.tuples(st.just(b"cookie"), COOKIE_HEADERS) | st.tuples(HEADER_NAMES, st.binary(max_size=8)), max_size=8
)


@given(requests=st.lists(REQUEST_HEADERS, min_size=1, max_size=4), as_lists=st.booleans())
def test_the_app_sees_the_headers_reduced_and_every_cookie_header_filtered(
    requests: list[list[tuple[bytes, bytes]]], as_lists: bool
) -> None:
    # One or several Cookie headers (HTTP/2 sends one per cookie), each request twice: the second
    # time the visitor is known and its filtered Cookie header reused. ASGI allows any iterable for
    # a header pair: lists too.
    middleware, seen = recording_middleware()
    withheld = frozenset(name.encode() for name in middleware.config.withheld_headers)
    rules = CookieRules(registry=middleware.config.registry, block_unknown=False)

    async def run() -> None:
        for headers in requests * 2:
            scope = http_scope(headers=headers)
            if as_lists:
                scope["headers"] = [list(pair) for pair in scope["headers"]]
            await drive(middleware, scope)

    asyncio.run(run())
    for headers, app_headers in zip(requests * 2, seen, strict=True):
        reference = rules.without_refused(
            reduce_headers(http_scope(headers=headers)["headers"], withheld), frozenset()
        )
        assert [tuple(pair) for pair in app_headers] == reference


def test_behind_trusted_proxies_each_forwarded_address_is_its_own_visitor() -> None:
    async def address(request: Request) -> Response:
        consent = request.state.consent
        return JSONResponse({"ip": consent.security_client_ip, "app": request.scope["client"][0]})

    app = Starlette(routes=[Route("/", address)])
    middleware = ConsentMiddleware(app, secret_key=SECRET, geoip_database=None, trusted_proxies=["127.0.0.1"])
    client = TestClient(middleware, client=("127.0.0.1", 40000))
    seen = [
        client.get("/", headers={"X-Forwarded-For": forwarded}).json()
        for forwarded in ("81.246.10.7", "198.51.100.9", "81.246.10.7", "2001:db8::1")
    ]
    assert [answer["ip"] for answer in seen] == ["81.246.10.7", "198.51.100.9", "81.246.10.7", "2001:db8::1"]
    assert [answer["app"] for answer in seen] == ["81.246.10.0", "198.51.100.0", "81.246.10.0", "2001:db8::"]


def test_each_page_of_one_visitor_gets_its_own_return_path() -> None:
    # The visitor keeps its last page's markup: a page with another path or query is not that page.
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET, geoip_database=None))
    for path in ("/a", "/b", "/b?x=1", "/a", "/a", "/b?x=2"):
        links = re.findall(r"next=([^\"&\s]*)", client.get(path).text)
        assert links
        assert {unquote(link) for link in links} == {path}


def test_a_decision_in_a_second_cookie_header_counts() -> None:
    # HTTP/2 may send each cookie in a Cookie header of its own (RFC 9113 8.2.3).
    seen: list[tuple[bool, list[bytes]]] = []
    page = html_app()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        cookies = [value for name, value in scope["headers"] if name == b"cookie"]
        seen.append((scope["state"]["consent"].decided, cookies))
        await page(scope, receive, send)

    middleware = ConsentMiddleware(app, secret_key=SECRET, consent_log=None, geoip_database=None)
    codec = DecisionCodec.for_config(middleware.config)
    granted = frozenset(category.name for category in middleware.config.categories)
    decision = Decision(
        new_consent_id(), middleware.config.policy_version, granted, int(time.time()), "accept_all"
    )
    headers = [(b"cookie", b"_ga=GA1.1.1.1"), (b"cookie", b"consent=" + codec.encode(decision).encode())]
    for _ in range(2):  # the second time, the visitor is known
        messages = asyncio.run(drive(middleware, http_scope(headers=headers)))
        body = body_of(messages)
        assert b'id="consent-banner"' not in body
        assert b'id="consent-settings"' in body
    assert seen == [(True, [b"_ga=GA1.1.1.1", b"consent=" + codec.encode(decision).encode()])] * 2
