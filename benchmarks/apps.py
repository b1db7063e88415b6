"""The apps the speed benchmarks serve: one tiny site, and each variant an operator could put in front of it.

The site (``site``) answers, with no framework in the way:

- ``/page``: a 5 KB HTML page with a Google Analytics tag (gtag snippet) in its head;
- ``/page-unique``: the same page with a per-request marker, so no cache keyed by content can help;
- ``/page100k``: a 100 KB HTML page (the 5 KB page's head, then a long article);
- ``/json``: a small JSON response;
- ``/stream``: a 100 MB HTML page streamed in 64 KiB chunks (the size is ``?mb=N``).

The variants (``VARIANTS``), each a factory ``(app) -> app``:

- ``bare``: the site alone;
- ``passthrough``: a pure-ASGI middleware that forwards every message (the floor of any middleware);
- ``gzip``: Starlette's ``GZipMiddleware`` (what an operator already runs);
- ``naive``: a ``BaseHTTPMiddleware`` that reads the whole page and injects a banner before ``</body>``,
  what an operator would write without this project;
- ``limit``: a pure-ASGI stand-in that injects exactly the bytes and headers this middleware adds for
  an undecided visitor, with no logic at all (what the injection alone costs in uvicorn);
- ``consent``: ``ConsentMiddleware`` on its embedded defaults (SQLite consent log, bundled geolocation).

``python -m uvicorn --factory benchmarks.apps:served`` serves the variant named in ``CONSENT_BENCH_VARIANT``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Final, TypeVar

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from consent_middleware import ConsentMiddleware
from consent_middleware.state import Decision, DecisionCodec, new_consent_id

SECRET: Final = "benchmark-secret-key-0123456789-abcdef"  # noqa: S105 (the benchmark's own)
VARIANT_ENV: Final = "CONSENT_BENCH_VARIANT"
WORK_ENV: Final = "CONSENT_BENCH_WORK"
STREAM_CHUNK: Final = 64 * 1024
STREAM_MB: Final = 100
GA_ID: Final = "G-BENCH12345"
_T = TypeVar("_T")

HEAD: Final = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Brightlane Software · Invoicing for small firms</title>
<link rel="stylesheet" href="/static/site.css">
<script async src="https://www.googletagmanager.com/gtag/js?id={GA_ID}"></script>
<script>
  window.dataLayer = window.dataLayer || [];
  function gtag(){{dataLayer.push(arguments);}}
  gtag('js', new Date());
  gtag('config', '{GA_ID}');
</script>
</head>
"""
NAV: Final = """<body>
<header class="site"><a class="logo" href="/">Brightlane Software</a>
<nav><ul><li><a href="/">Home</a></li><li><a href="/product">Product</a></li>
<li><a href="/pricing">Pricing</a></li><li><a href="/blog">Blog</a></li>
<li><a href="/contact">Contact</a></li>
</ul></nav></header>
<main>
"""
PARAGRAPH: Final = """<section class="feature">
<h2>Invoices that send themselves</h2>
<p>Brightlane prepares every invoice from your time sheets and sends it on the day you choose. Your
clients pay by <a href="/help/payments">bank transfer or card</a>, and the payment is matched to the
invoice <em>automatically</em>, so the books stay right without a spreadsheet.</p>
<img src="/img/invoice.png" alt="An invoice on screen" width="640" height="400" loading="lazy">
</section>
"""
FOOT: Final = """</main>
<footer><p>&copy; 2026 Brightlane Software BV, Gent. <a href="/privacy">Privacy</a></p></footer>
</body>
</html>
"""


def html_page(size: int, marker: str = "") -> bytes:
    """A page of about ``size`` bytes: the GA head, a nav, feature sections, a footer."""
    parts = [HEAD, NAV]
    if marker:
        parts.append(f'<p class="request">{marker}</p>\n')
    length = sum(len(part) for part in parts) + len(FOOT)
    while length + len(PARAGRAPH) <= size:
        parts.append(PARAGRAPH)
        length += len(PARAGRAPH)
    parts.append(FOOT)
    return "".join(parts).encode("utf-8")


PAGE: Final = html_page(5 * 1024)
PAGE_100K: Final = html_page(100 * 1024)
PAGE_SOURCE: Final = bytearray(PAGE)
PAGE_100K_SOURCE: Final = bytearray(PAGE_100K)
INVOICES: Final = {"invoices": [{"id": n, "total": 120.5 * n, "paid": n % 2 == 0} for n in range(8)]}
JSON_BODY: Final = json.dumps(INVOICES)
JSON: Final = JSON_BODY.encode()
HTML_TYPE: Final = b"text/html; charset=utf-8"
JSON_TYPE: Final = b"application/json"


def _start(content_type: bytes, length: int | None) -> Message:
    headers = [(b"content-type", content_type)]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http.response.start", "status": 200, "headers": headers}


async def site(scope: Scope, receive: Receive, send: Send) -> None:
    """The sample site, in raw ASGI so that the bare figure is the server's, not a framework's."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/page":
        await send(_start(HTML_TYPE, len(PAGE)))
        # A new bytes object per response, as a template engine makes: nothing cached on it carries over.
        await send({"type": "http.response.body", "body": bytes(PAGE_SOURCE)})
    elif path == "/page-unique":
        body = PAGE.replace(b"<main>\n", b'<main>\n<p class="request">%d</p>\n' % time.perf_counter_ns(), 1)
        await send(_start(HTML_TYPE, len(body)))
        await send({"type": "http.response.body", "body": body})
    elif path == "/page100k":
        await send(_start(HTML_TYPE, len(PAGE_100K)))
        await send({"type": "http.response.body", "body": bytes(PAGE_100K_SOURCE)})
    elif path == "/json":
        await send(_start(JSON_TYPE, len(JSON)))
        await send({"type": "http.response.body", "body": JSON})
    elif path == "/stream":
        await _stream(scope, send)
    else:
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _stream(scope: Scope, send: Send) -> None:
    query = scope.get("query_string", b"").decode()
    megabytes = int(query[3:]) if query.startswith("mb=") and query[3:].isdigit() else STREAM_MB
    total = megabytes * 1_000_000
    await send(_start(HTML_TYPE, None))
    await send({"type": "http.response.body", "body": HEAD.encode() + NAV.encode(), "more_body": True})
    chunk = (PARAGRAPH.encode() * (STREAM_CHUNK // len(PARAGRAPH) + 1))[:STREAM_CHUNK]
    sent = 0
    while sent < total:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        sent += len(chunk)
    await send({"type": "http.response.body", "body": FOOT.encode()})


def starlette_site() -> Starlette:
    """The same site as a Starlette app (routing, response classes, JSON rendered per request): what an
    operator mounts the middleware in front of."""

    async def page(request: Request) -> Response:
        return HTMLResponse(bytes(PAGE_SOURCE))

    async def page_unique(request: Request) -> Response:
        marker = b'<main>\n<p class="request">%d</p>\n' % time.perf_counter_ns()
        return HTMLResponse(PAGE.replace(b"<main>\n", marker, 1))

    async def page_100k(request: Request) -> Response:
        return HTMLResponse(bytes(PAGE_100K_SOURCE))

    async def invoices(request: Request) -> Response:
        return JSONResponse(INVOICES)

    async def stream(request: Request) -> Response:
        return StreamingResponse(_stream_chunks(request.query_params.get("mb")), media_type="text/html")

    return Starlette(
        routes=[
            Route("/page", page),
            Route("/page-unique", page_unique),
            Route("/page100k", page_100k),
            Route("/json", invoices),
            Route("/stream", stream),
        ]
    )


async def _stream_chunks(mb: str | None) -> AsyncIterator[bytes]:
    total = (int(mb) if mb and mb.isdigit() else STREAM_MB) * 1_000_000
    yield HEAD.encode() + NAV.encode()
    chunk = (PARAGRAPH.encode() * (STREAM_CHUNK // len(PARAGRAPH) + 1))[:STREAM_CHUNK]
    sent = 0
    while sent < total:
        yield chunk
        sent += len(chunk)
    yield FOOT.encode()


# -- the variants ------------------------------------------------------------------------------------


class PassThrough:
    """A pure-ASGI middleware that forwards everything: the least a middleware can cost."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def forward(message: Message) -> None:
            await send(message)

        await self.app(scope, receive, forward)


NAIVE_BANNER: Final = (
    b'<div id="cookie-banner" role="dialog"><p>We use cookies.</p>'
    b'<form method="post" action="/consent"><button name="choice" value="accept">Accept</button>'
    b'<button name="choice" value="reject">Reject</button></form></div>'
)


class NaiveBanner(BaseHTTPMiddleware):
    """What an operator writes without this project: buffer the HTML page, inject a banner, re-send."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        if not response.headers.get("content-type", "").startswith("text/html"):
            return response
        body = b"".join([chunk async for chunk in _body_of(response)])
        body = body.replace(b"</body>", NAIVE_BANNER + b"</body>", 1)
        headers = {k: v for k, v in response.headers.items() if k != "content-length"}
        return Response(body, status_code=response.status_code, headers=headers)


async def _body_of(response: Response) -> AsyncIterator[bytes]:
    async for chunk in response.body_iterator:  # type: ignore[attr-defined]
        yield chunk if isinstance(chunk, bytes) else chunk.encode()


class InjectionLimit:
    """Adds ``extra_headers`` and ``extra_body`` bytes to every HTML page, with no decision at all.

    The least any injecting layer does: one pass over the start's headers (the content type read, the
    length replaced), the bytes appended to the last body chunk, and ``send`` a plain function handing
    on the server's awaitable, as this middleware's is. (Until session 9 it edited the start through
    ``MutableHeaders``, in a coroutine per message: 3.9 µs per page in process, logic a limit should
    not have.)
    """

    def __init__(self, app: ASGIApp, *, extra_headers: list[tuple[bytes, bytes]], extra_body: bytes) -> None:
        self.app = app
        self.extra_headers = extra_headers
        self.extra_body = extra_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra_headers, extra_body = self.extra_headers, self.extra_body
        html = False

        def inject(message: Message) -> Awaitable[None]:
            nonlocal html
            if message["type"] == "http.response.start":
                headers = []
                length: bytes | None = None
                for name, value in message.get("headers", ()):
                    if name == b"content-type":
                        html = value.startswith(b"text/html")
                    elif name == b"content-length":
                        length = value
                        continue
                    headers.append((name, value))
                if html:
                    headers += extra_headers
                    if length is not None:
                        headers.append((b"content-length", b"%d" % (int(length) + len(extra_body))))
                    return send({**message, "headers": headers})
            elif html and message["type"] == "http.response.body" and not message.get("more_body"):
                return send({**message, "body": message.get("body", b"") + extra_body})
            return send(message)

        await self.app(scope, receive, inject)


def consent(app: ASGIApp, work: Path | None = None) -> ConsentMiddleware:
    """This middleware on its embedded defaults (an SQLite log in ``work``, the bundled database)."""
    work = work or Path(os.environ.get(WORK_ENV, "."))
    return ConsentMiddleware(
        app,
        secret_key=SECRET,
        consent_log=f"sqlite:///{work / 'consent.db'}",
        log_spool=str(work / "consent.spool"),
    )


def decided_cookie(categories: frozenset[str], method: str) -> str:
    """A valid signed consent cookie for the middleware built by :func:`consent`."""
    probe = consent(site, Path("/nonexistent"))
    config = probe.config
    codec = DecisionCodec.for_config(config)
    decision = Decision(new_consent_id(), config.policy_version, categories, int(time.time()), method)
    return f"consent={codec.encode(decision)}"


ACCEPT_ALL: Final = frozenset({"preferences", "analytics", "marketing"})


async def call(app: ASGIApp, scope: Scope) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """One request straight through ASGI: the response headers and body."""
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    await app(scope, receive, send)
    headers = [(bytes(name), bytes(value)) for name, value in messages[0]["headers"]]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return headers, body


def request_scope(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    """A scope as uvicorn builds it for a browser's GET."""
    path, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
            (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            (b"accept-language", b"nl-BE,nl;q=0.9,en;q=0.5"),
            (b"accept-encoding", b"gzip, deflate, br"),
            *(headers or []),
        ],
        "state": {},
    }


def _run_apart(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` to completion on a loop of its own, in a thread: uvicorn calls the app factory
    from inside its running loop, where ``asyncio.run`` is refused."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def injection_limit(app: ASGIApp) -> InjectionLimit:
    """The limit variant, measuring what the middleware adds to the 5 KB page for an undecided visitor."""
    bare_headers, bare_body = _run_apart(call(site, request_scope("/page")))
    headers, body = _run_apart(call(consent(site, Path("/nonexistent")), request_scope("/page")))
    added = [pair for pair in headers if pair not in bare_headers and pair[0] != b"content-length"]
    return InjectionLimit(app, extra_headers=added, extra_body=b" " * (len(body) - len(bare_body)))


VARIANTS: Final[dict[str, Callable[[ASGIApp], ASGIApp]]] = {
    "bare": lambda app: app,
    "passthrough": PassThrough,
    "gzip": lambda app: GZipMiddleware(app),
    "naive": NaiveBanner,
    "limit": injection_limit,
    "consent": consent,
}


SITE_ENV: Final = "CONSENT_BENCH_SITE"
#: The sites: "asgi" (raw ASGI, the server's own cost as the baseline) and "starlette".
SITES: Final[dict[str, Callable[[], ASGIApp]]] = {"asgi": lambda: site, "starlette": starlette_site}


def served() -> ASGIApp:
    """The app uvicorn serves: the variant named in ``CONSENT_BENCH_VARIANT`` over the site named in
    ``CONSENT_BENCH_SITE`` (default: the Starlette one)."""
    return VARIANTS[os.environ.get(VARIANT_ENV, "bare")](SITES[os.environ.get(SITE_ENV, "starlette")]())
