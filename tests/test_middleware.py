"""The page path: banner injection, pass-through rules, headers, the state the app reads."""

from __future__ import annotations

import asyncio
import gc
import gzip
import re
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from asgiref.wsgi import WsgiToAsgi
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from consent_middleware import ConsentMiddleware
from tests.conftest import (
    ORIGIN,
    SECRET,
    body_of,
    drive,
    headers_of,
    html_app,
    html_page,
    http_scope,
    raw_app,
    without_injections,
)
from tests.test_state import codec, decision

BANNER = b'id="consent-banner"'
SETTINGS = b'id="consent-settings"'


def accepted_client(app: Starlette | ConsentMiddleware) -> TestClient:
    client = TestClient(app)
    response = client.post("/_consent", json={"decision": "accept_all"}, headers={"Origin": ORIGIN})
    assert response.status_code == 200
    return client


def test_banner_goes_right_after_body_tag_and_content_length_matches() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET))
    response = client.get("/")
    assert response.status_code == 200
    after_body = response.content.split(b'<body class="page">', 1)[1]
    assert after_body.startswith(b'<link rel="stylesheet" href="/_consent/static/banner.')
    assert BANNER in after_body
    assert without_injections(response.content) == html_page()
    assert response.headers["content-length"] == str(len(response.content))


def test_page_outside_the_injection_is_unchanged() -> None:
    page = html_page("<p>Ünïcødé ✓</p>")
    response = TestClient(ConsentMiddleware(html_app(page), secret_key=SECRET)).get("/")
    assert BANNER in response.content
    assert without_injections(response.content) == page


def test_page_without_body_tag_gets_the_banner_at_the_end() -> None:
    response = TestClient(ConsentMiddleware(html_app(b"<p>fragment</p>"), secret_key=SECRET)).get("/")
    assert response.content.startswith(b"<p>fragment</p>")
    assert BANNER in response.content


def test_decided_visitor_gets_no_banner_but_a_settings_control() -> None:
    client = accepted_client(ConsentMiddleware(html_app(), secret_key=SECRET))
    response = client.get("/")
    assert BANNER not in response.content
    assert SETTINGS in response.content
    assert response.headers["content-length"] == str(len(response.content))


def test_settings_control_can_be_turned_off() -> None:
    client = accepted_client(ConsentMiddleware(html_app(), secret_key=SECRET, settings_button=False))
    response = client.get("/")
    assert b"consent-settings" not in response.content
    assert without_injections(response.content) == html_page()


def test_streamed_html_is_rewritten_without_content_length() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"<html><head></head><bo"
        yield b'dy id="x">'
        yield b"<p>streamed</p></body></html>"

    async def page(request: Request) -> Response:
        return StreamingResponse(chunks(), media_type="text/html")

    app = ConsentMiddleware(Starlette(routes=[Route("/", page)]), secret_key=SECRET)
    response = TestClient(app).get("/")
    assert "content-length" not in response.headers
    assert BANNER in response.content
    assert (
        without_injections(response.content)
        == b'<html><head></head><body id="x"><p>streamed</p></body></html>'
    )


@pytest.mark.anyio
async def test_rewriting_streams_chunk_by_chunk() -> None:
    """Each body chunk goes out before the next arrives: the page is never buffered whole."""
    page_chunks = [b"<html><body>", b"x" * 100_000, b"y" * 100_000, b"</body></html>"]
    sent_sizes: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]}
        )
        for index, chunk in enumerate(page_chunks):
            await send(
                {"type": "http.response.body", "body": chunk, "more_body": index < len(page_chunks) - 1}
            )
            sent_sizes.append(len(collected_body()))

    messages: list[Message] = []

    def collected_body() -> bytes:
        return body_of(messages)

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        messages.append(message)

    await ConsentMiddleware(app, secret_key=SECRET)(http_scope(), receive, send)
    assert sent_sizes[1] >= 100_000  # the first big chunk left before the second was produced
    assert collected_body().endswith(b"y" * 100_000 + b"</body></html>")


def test_gzip_encoded_html_passes_untouched() -> None:
    compressed = gzip.compress(html_page())
    headers = [
        (b"content-type", b"text/html"),
        (b"content-encoding", b"gzip"),
        (b"content-length", str(len(compressed)).encode()),
    ]
    client = TestClient(ConsentMiddleware(html_app(compressed, headers=headers), secret_key=SECRET))
    response = client.get("/", headers={"Accept-Encoding": "identity"})
    assert response.content == html_page()  # httpx decoded it: no banner was added inside
    assert "vary" not in response.headers
    assert "cache-control" not in response.headers


def test_event_stream_passes_untouched() -> None:
    body = b"data: <body>\n\n"
    headers = [(b"content-type", b"text/event-stream")]
    response = TestClient(ConsentMiddleware(html_app(body, headers=headers), secret_key=SECRET)).get("/")
    assert response.content == body
    assert "vary" not in response.headers


def test_json_passes_untouched() -> None:
    async def api(request: Request) -> Response:
        return JSONResponse({"html": "<body>"})

    client = TestClient(ConsentMiddleware(Starlette(routes=[Route("/api", api)]), secret_key=SECRET))
    response = client.get("/api")
    assert response.json() == {"html": "<body>"}
    assert "vary" not in response.headers
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses_pass_untouched(status: int) -> None:
    headers = [(b"content-type", b"text/html")]
    app = raw_app(
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": b""},
    )
    response = TestClient(ConsentMiddleware(app, secret_key=SECRET)).get("/")
    assert response.status_code == status
    assert response.content == b""
    assert "vary" not in response.headers


def test_head_gets_the_get_headers_without_content_length() -> None:
    async def page(request: Request) -> Response:
        return HTMLResponse(html_page().decode(), headers={"Cache-Control": "public, max-age=60"})

    client = TestClient(ConsentMiddleware(Starlette(routes=[Route("/", page)]), secret_key=SECRET))
    get, head = client.get("/"), client.head("/")
    assert head.content == b""
    assert "content-length" not in head.headers
    assert head.headers["vary"] == get.headers["vary"] == "Cookie, Sec-GPC, Accept-Language"
    assert head.headers["cache-control"] == get.headers["cache-control"] == "max-age=60, private"


def test_excluded_paths_are_left_alone() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET, exclude_paths=["/admin"]))
    response = client.get("/admin/page")
    assert response.content == html_page()
    assert "vary" not in response.headers


def test_cache_control_becomes_private_and_drops_shared_cache_directives() -> None:
    headers = [(b"content-type", b"text/html"), (b"cache-control", b"public, max-age=300, s-maxage=600")]
    response = TestClient(ConsentMiddleware(html_app(headers=headers), secret_key=SECRET)).get("/")
    assert response.headers["cache-control"] == "max-age=300, private"


def test_no_store_is_kept_and_not_loosened() -> None:
    headers = [(b"content-type", b"text/html"), (b"cache-control", b"no-store")]
    response = TestClient(ConsentMiddleware(html_app(headers=headers), secret_key=SECRET)).get("/")
    assert response.headers["cache-control"] == "no-store"


def test_vary_is_merged_with_the_apps() -> None:
    headers = [(b"content-type", b"text/html"), (b"vary", b"Accept-Encoding, cookie")]
    response = TestClient(ConsentMiddleware(html_app(headers=headers), secret_key=SECRET)).get("/")
    assert response.headers["vary"] == "Accept-Encoding, cookie, Sec-GPC, Accept-Language"


def test_set_cookie_headers_are_appended_not_merged() -> None:
    async def page(request: Request) -> Response:
        response = HTMLResponse(html_page().decode())
        response.set_cookie("cart", "1")
        return response

    client = TestClient(ConsentMiddleware(Starlette(routes=[Route("/", page)]), secret_key=SECRET))
    response = client.get("/?lang=nl")
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 2
    assert cookies[0].startswith("cart=1")
    assert cookies[1].startswith("consent_lang=nl;")


@pytest.mark.anyio
async def test_file_response_is_gated_under_a_server_offering_pathsend(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_bytes(html_page())
    seen_extensions: list[dict[str, object]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen_extensions.append(dict(scope["extensions"]))
        await FileResponse(page)(scope, receive, send)

    scope = http_scope(extensions={"http.response.pathsend": {}, "http.response.zerocopysend": {}})
    messages = await drive(ConsentMiddleware(app, secret_key=SECRET), scope)
    assert not any(m["type"] == "http.response.pathsend" for m in messages)
    assert BANNER in body_of(messages)
    assert seen_extensions == [{}]
    assert headers_of(messages)["content-length"] == [str(len(body_of(messages)))]


@pytest.mark.anyio
async def test_unknown_message_types_are_forwarded_after_the_held_start() -> None:
    app = raw_app(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/html")],
            "trailers": True,
        },
        {"type": "http.response.body", "body": html_page(), "more_body": True},
        {"type": "http.response.body", "body": b""},
        {"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")], "more_trailers": False},
    )
    messages = await drive(ConsentMiddleware(app, secret_key=SECRET), http_scope())
    assert [m["type"] for m in messages] == [
        "http.response.start",
        "http.response.body",
        "http.response.body",
        "http.response.trailers",
    ]
    assert BANNER in body_of(messages)


@pytest.mark.anyio
async def test_unknown_message_before_the_first_body_flushes_the_start() -> None:
    app = raw_app(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/html"), (b"content-length", b"5")],
        },
        {"type": "http.response.debug", "info": {}},
        {"type": "http.response.body", "body": b"<body>"},
    )
    messages = await drive(ConsentMiddleware(app, secret_key=SECRET), http_scope())
    assert [m["type"] for m in messages] == [
        "http.response.start",
        "http.response.debug",
        "http.response.body",
    ]
    assert "content-length" not in headers_of(messages)
    assert BANNER in body_of(messages)


@pytest.mark.anyio
@pytest.mark.parametrize("scope_type", ["websocket", "lifespan"])
async def test_other_scopes_pass_straight_through(scope_type: str) -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    scope = {"type": scope_type, "path": "/", "headers": []}
    await ConsentMiddleware(app, secret_key=SECRET)(scope, None, None)  # type: ignore[arg-type]
    assert seen == [scope]
    assert seen[0] is scope


def test_app_reads_the_undecided_state() -> None:
    async def view(request: Request) -> Response:
        consent = request.state.consent
        return JSONResponse(
            {
                "decided": consent.decided,
                "analytics": consent.granted("analytics"),
                "necessary": consent.granted("necessary"),
                "device": consent.device,
                "client_ip": consent.client_ip,
                "language": consent.language,
            }
        )

    client = TestClient(ConsentMiddleware(Starlette(routes=[Route("/", view)]), secret_key=SECRET))
    assert client.get("/", headers={"Accept-Language": "nl-BE"}).json() == {
        "decided": False,
        "analytics": False,
        "necessary": True,
        "device": None,
        "client_ip": None,
        "language": "nl",
    }


def test_app_reads_the_decided_state() -> None:
    async def view(request: Request) -> Response:
        consent = request.state.consent
        return JSONResponse(
            {
                "decided": consent.decided,
                "categories": dict(consent.categories),
                "consent_id": consent.consent_id,
            }
        )

    client = accepted_client(ConsentMiddleware(Starlette(routes=[Route("/", view)]), secret_key=SECRET))
    data = client.get("/").json()
    assert data["decided"] is True
    assert data["categories"] == {
        "necessary": True,
        "preferences": True,
        "analytics": True,
        "marketing": True,
    }
    assert re.fullmatch(r"[0-9a-f]{32}", data["consent_id"])


def test_injected_markup_carries_the_apps_csp_nonce() -> None:
    async def page(request: Request) -> Response:
        request.state.csp_nonce = "r4nd0mN0nce"
        return HTMLResponse(html_page().decode())

    client = TestClient(ConsentMiddleware(Starlette(routes=[Route("/", page)]), secret_key=SECRET))
    body = client.get("/").text
    tags = re.findall(r"<(?:script|style|link)\b[^>]*>", body)
    assert tags
    assert all('nonce="r4nd0mN0nce"' in tag for tag in tags)


def test_lang_query_switches_the_banner_and_is_remembered() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET))
    first = client.get("/?lang=nl")
    assert 'lang="nl"' in first.text
    assert first.headers["set-cookie"].startswith("consent_lang=nl;")
    again = client.get("/")
    assert 'id="consent-banner" lang="nl"' in again.text
    assert "set-cookie" not in again.headers


def test_invalid_lang_is_ignored_and_not_reflected() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET))
    response = client.get("/?lang=%3Cscript%3E")
    assert 'id="consent-banner" lang="en"' in response.text
    assert "<script>" not in response.text.split('id="consent-banner"')[1].split("</script>")[0]
    assert "set-cookie" not in response.headers


def test_browser_language_picks_the_banner_language() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET))
    response = client.get("/", headers={"Accept-Language": "ja;q=0.9, nl-BE;q=0.8, en;q=0.5"})
    assert 'id="consent-banner" lang="nl"' in response.text


def test_gpc_signal_shows_in_the_banner_and_stores_nothing() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET))
    response = client.get("/", headers={"Sec-GPC": "1"})
    assert BANNER in response.content
    assert "Global Privacy Control" in response.text
    assert "set-cookie" not in response.headers
    state = client.get("/_consent", headers={"Sec-GPC": "1"}).json()
    assert state["decided"] is False
    assert state["gpc"] is True
    assert state["categories"]["analytics"] is False


def test_gpc_well_known_file_is_served() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET))
    data = client.get("/.well-known/gpc.json").json()
    assert data["gpc"] is True
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", data["lastUpdate"])


def test_gpc_well_known_file_is_not_served_when_gpc_is_off() -> None:
    app = Starlette(routes=[])
    client = TestClient(ConsentMiddleware(app, secret_key=SECRET, respect_gpc=False))
    assert client.get("/.well-known/gpc.json").status_code == 404


@given(page=st.binary(max_size=400), cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_any_split_of_a_page_gives_the_one_chunk_output(page: bytes, cuts: list[int]) -> None:
    points = sorted({min(cut, len(page)) for cut in cuts})
    pieces = [page[start:end] for start, end in zip([0, *points], [*points, len(page)], strict=True)]

    def app_for(chunks: list[bytes]) -> ConsentMiddleware:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]}
            )
            for index, chunk in enumerate(chunks):
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": index < len(chunks) - 1}
                )

        return ConsentMiddleware(app, secret_key=SECRET)

    whole = TestClient(app_for([page])).get("/").content
    split = TestClient(app_for(pieces)).get("/").content
    assert split == whole


def test_a_request_leaves_no_cyclic_garbage() -> None:
    # Every object a request makes is freed when it ends (no reference cycle waiting for the
    # garbage collector): what keeps memory flat and reused under load.
    app = ConsentMiddleware(html_app(), secret_key=SECRET)
    json_app = ConsentMiddleware(
        raw_app(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            },
            {"type": "http.response.body", "body": b"{}"},
        ),
        secret_key=SECRET,
    )
    everything = frozenset({"preferences", "analytics", "marketing"})
    accepted = f"consent={codec().encode(decision(categories=everything, method='accept_all'))}".encode()
    visitors: list[list[tuple[bytes, bytes]]] = [[], [(b"cookie", accepted)], [(b"accept-language", b"fr")]]
    scopes = [
        http_scope(path, headers=[(b"user-agent", b"Mozilla/5.0 Firefox/133.0"), *headers])
        for path in ("/", "/?lang=nl")
        for headers in visitors
    ]

    async def serve_all() -> None:
        for scope in scopes:
            for target in (app, json_app):
                await drive(target, dict(scope))

    asyncio.run(serve_all())  # caches filled
    gc.collect()
    gc.disable()
    try:
        asyncio.run(serve_all())
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_a_wsgi_app_under_asgiref_gets_a_send_marked_async() -> None:
    # asgiref's WsgiToAsgi (Django's and Flask's way onto ASGI) hands the send it is given to
    # async_to_sync, which warns about a callable not marked as a coroutine function.
    def wsgi_app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [b"<html><head></head><body><p>WSGI</p></body></html>"]

    client = TestClient(ConsentMiddleware(WsgiToAsgi(wsgi_app), secret_key=SECRET))  # type: ignore[no-untyped-call]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = client.get("/")
    assert response.status_code == 200
    assert BANNER in response.content
    assert not [warning for warning in caught if "async_to_sync" in str(warning.message)]


@pytest.mark.parametrize("content_type", [b"text/html", b"application/json"])
def test_response_headers_given_as_a_generator_all_reach_the_server(content_type: bytes) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        pairs = [(b"content-type", content_type), (b"x-request-id", b"7")]
        await send({"type": "http.response.start", "status": 200, "headers": (pair for pair in pairs)})
        await send({"type": "http.response.body", "body": html_page()})

    middleware = ConsentMiddleware(app, secret_key=SECRET, consent_log=None, geoip_database=None)
    for _ in range(2):
        headers = headers_of(asyncio.run(drive(middleware, http_scope())))
        assert headers["content-type"] == [content_type.decode()]
        assert headers["x-request-id"] == ["7"]
