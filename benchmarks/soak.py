"""Soak test: minutes of realistic, mixed traffic through uvicorn; every answer checked, memory watched.

Run from the repository root: ``python -m benchmarks.soak --duration 300 --connections 64`` (``make soak``;
``--help`` for the options). ``tests/test_soak.py`` runs the same soak for 15 s in the test suite.

uvicorn (one worker; ``--loop uvloop --http httptools`` when both are installed; no access log) serves,
in a subprocess pinned with ``taskset`` to one core, a small company site behind ``ConsentMiddleware``:
the bundled geolocation database, ``trusted_proxies=["127.0.0.1"]`` (the load sends each visitor's
address in ``X-Forwarded-For``), Google Analytics and YouTube registered, and a real SQLite consent log
in a temporary folder. The load generator, this process pinned to the other core, holds N keep-alive
HTTP/1.1 connections (raw asyncio streams, uvloop when installed), one request in flight on each, for
the duration. Each connection serves its own visitors (addresses from Belgium, the US, the Netherlands,
private networks, IPv6; several browser languages; a crawler; Global Privacy Control), each with a
cookie jar fed by the answers; a visitor now and then leaves and a new one arrives. The mix:

- ``page``: a ~5 KB page with a Google Analytics tag (sometimes with ``?lang=``), ``large``: 64 KB and
  256 KB pages (GA tag, a YouTube iframe, GA pixels), ``stream``: a page streamed in 48 chunks whose
  boundaries cut through tags;
- ``api``: a JSON API answer, echoing what the app saw (the consent, the ``_ga`` cookie, the client address);
- ``decide``: ``POST PREFIX`` with ``accept_all``, ``reject_all`` or ``custom``, as JSON or as a form, with
  an ``Origin``, a ``Referer`` or neither (a few from another origin: those must be 403); ``withdraw``;
- ``state``, ``preferences``, ``cookies``, ``record``: the other endpoints; ``static``: the banner's script
  and stylesheet (some revalidated: 304); ``gpc``: ``/.well-known/gpc.json``.

Every answer is checked against what the request should give: the status, the content type, a whole
body, the banner (in the expected language) for an undecided visitor and the settings control for a
decided one, the tracker gated or not, the ``_ga`` cookie dropped or not, the app's view of the visitor.
Errors are unexpected statuses, 5xx, lost connections, timeouts and content mismatches. The server's
resident memory (``VmRSS`` in ``/proc/PID/status``) is sampled every few seconds; after the warm-up it
must stay flat (see ``RSS_GROWTH_LIMIT_MB``). Afterwards the server is stopped and the consent log must
hold one entry per confirmed decision, in a chain that verifies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import itertools
import json
import os
import random
import re
import secrets
import subprocess
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Final
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from benchmarks.bench_decisions import (
    cpu_seconds,
    fast_stack,
    log_tail,
    loop_factory,
    pinning,
    uvicorn_server,
)
from consent_middleware import ConsentMiddleware, Cookie, Service
from consent_middleware.assets import Assets
from consent_middleware.geo import GeoLocator, bundled_database
from consent_middleware.log import open_log

SECRET: Final = "soak-test-secret-key-0123456789-abcdefghij"  # noqa: S105 (the soak's own)
LOG_ENV: Final = "CONSENT_SOAK_LOG"
SPOOL_ENV: Final = "CONSENT_SOAK_SPOOL"
PREFIX: Final = "/_consent"
SERVER_CPU: Final = 0
LOAD_CPU: Final = 1
ROOT: Final = Path(__file__).resolve().parent.parent
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 60.0
#: An answer slower than this is an error (the server is stuck, or the connection is).
REQUEST_TIMEOUT: Final = 30.0
#: The largest growth of the server's resident memory from the end of the warm-up to the end of the run
#: that passes. Why 10 MB: the process settles at about 75 MB; allocator noise (arenas, the SQLite page
#: cache, transient 256 KB pages) moves it by a MB or two, while a leak of only 20 bytes per request would
#: add some 12 MB over the ~600,000 requests of a 5-minute run at 64 connections (and a leak of one
#: rendered banner, ~4 KB, per unique URL or personal page far more). Bounded caches (the geolocation
#: LRU, the page and banner caches, the gating policies) fill during the warm-up: the visitors'
#: addresses come from a bounded pool for that reason, while URLs and personal pages are unbounded.
RSS_GROWTH_LIMIT_MB: Final = 10.0

GA_ID: Final = "G-SOAK123456"
GA_SCRIPT: Final = f'<script async src="https://www.googletagmanager.com/gtag/js?id={GA_ID}"></script>'
GA_TAG: Final = f"""{GA_SCRIPT}
<script>
  window.dataLayer = window.dataLayer || [];
  function gtag(){{dataLayer.push(arguments);}}
  gtag('js', new Date());
  gtag('config', '{GA_ID}');
</script>"""
YOUTUBE_IFRAME: Final = (
    '<iframe width="560" height="315" src="https://www.youtube-nocookie.com/embed/soak" '
    'title="Product video" allowfullscreen></iframe>'
)
GA_PIXEL: Final = '<img src="https://www.google-analytics.com/collect?v=1&amp;tid=soak" alt="" width="1">'
GA_COOKIE: Final = "GA1.1.1234567890.1700000000"
LARGE_SIZES: Final = (64, 256)  # KB
STREAM_CHUNKS: Final = 48
YOUTUBE: Final = Service(
    name="youtube",
    category="marketing",
    provider="Google Ireland Limited",
    label="YouTube",
    purpose={"en": "Plays embedded videos."},
    hosts=("youtube.com", "youtube-nocookie.com", "ytimg.com"),
    cookies=(Cookie("VISITOR_INFO1_LIVE", provider="Google", max_age=180 * 24 * 3600), Cookie("YSC")),
)
OPTIONAL: Final = ("analytics", "marketing", "preferences")
#: ``/page/N`` with N % 10 == PERSONAL differs on every request (as a page with a CSRF token does).
PERSONAL: Final = 5


# -- the site (imported by the uvicorn subprocess) ------------------------------------------------------


def end_marker(name: str) -> str:
    return f'<p id="end">end of {name}</p>'


def html_document(name: str, body: str, *, head: str = GA_TAG) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{name} · Soak Software</title>\n"
        '<link rel="preconnect" href="https://www.googletagmanager.com">\n'
        f"{head}\n</head>\n<body>\n"
        '<header><nav><a href="/">Home</a> · <a href="/page/1">About</a> · <a href="/large/64">Docs</a> · '
        '<a href="/stream">News</a></nav></header>\n<main>\n'
        f"{body}\n{end_marker(name)}\n</main>\n</body>\n</html>\n"
    )


def paragraphs(count: int, seed: int) -> str:
    rng = random.Random(seed)
    words = ("planning", "software", "hospitals", "logistics", "Ghent", "Brussels", "Liège", "consent")
    return "\n".join(
        f'<p class="para">{" ".join(rng.choice(words) for _ in range(12))} '
        f'<a href="/page/{rng.randrange(100)}">more</a> <b>{index}</b></p>'
        for index in range(count)
    )


@cache
def small_page(number: int) -> bytes:
    """About 5 KB, with the GA tag in the head."""
    page = html_document(f"page {number}", f"<h1>Page {number}</h1>\n{paragraphs(36, number)}")
    return page.encode()


@cache
def large_page(kilobytes: int) -> bytes:
    parts = [f"<h1>Large page, {kilobytes} KB</h1>", YOUTUBE_IFRAME, GA_PIXEL]
    size, index = 0, 0
    while size < kilobytes * 1000 - 1500:
        block = paragraphs(20, kilobytes * 1000 + index) + f'\n<img src="/img/{index}.png" alt="figure">'
        if index % 5 == 0:
            block += "\n" + GA_PIXEL
        parts.append(block)
        size += len(block.encode())
        index += 1
    return html_document(f"large {kilobytes}", "\n".join(parts)).encode()


@cache
def stream_chunks() -> tuple[bytes, ...]:
    """A page cut into ``STREAM_CHUNKS`` pieces at fixed odd offsets: tags are split across chunks."""
    body = "\n".join([f"<h1>Streamed</h1>\n{GA_TAG}", YOUTUBE_IFRAME, paragraphs(60, 7)])
    page = html_document("stream", body).encode()
    step = len(page) // STREAM_CHUNKS + 1
    cuts = [min(len(page), index * step + (index * 7) % 13) for index in range(STREAM_CHUNKS)] + [len(page)]
    cuts[0] = 0
    return tuple(page[start:end] for start, end in itertools.pairwise(cuts) if end > start)


def with_ga_cookie(response: Response) -> Response:
    """The page sets the Google Analytics cookie, as gtag.js would: only granted visitors keep it."""
    response.set_cookie("_ga", GA_COOKIE, max_age=63072000, path="/")
    return response


async def page(request: Request) -> Response:
    number = int(request.path_params.get("number", 0)) % 100
    body = small_page(number)
    if number % 10 == PERSONAL:  # a page that differs per request (a form's CSRF token)
        token = secrets.token_hex(16).encode()
        body = body.replace(b"<main>\n", b'<main>\n<input type="hidden" name="csrf" value="%s">\n' % token, 1)
    return with_ga_cookie(HTMLResponse(body))


async def large(request: Request) -> Response:
    kilobytes = int(request.path_params["kilobytes"])
    if kilobytes not in LARGE_SIZES:
        return Response("no such page", status_code=404)
    return with_ga_cookie(HTMLResponse(large_page(kilobytes)))


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in stream_chunks():
            yield chunk

    return with_ga_cookie(StreamingResponse(chunks(), media_type="text/html; charset=utf-8"))


def api_items(number: int) -> list[dict[str, object]]:
    return [
        {"id": number * 20 + index, "name": f"item {number}-{index}", "price": index * 3}
        for index in range(20)
    ]


async def api(request: Request) -> Response:
    number = int(request.query_params.get("page", "0"))
    consent = getattr(request.state, "consent", None)  # None without the middleware
    return JSONResponse(
        {
            "page": number,
            "items": api_items(number),
            "decided": consent.decided if consent else None,
            "analytics": consent.granted("analytics") if consent else None,
            "saw_ga": "_ga" in request.cookies,
            "client": request.client.host if request.client else None,
            "user_agent": request.headers.get("user-agent"),
        }
    )


def site() -> Starlette:
    return Starlette(
        routes=[
            Route("/", page),
            Route("/page/{number:int}", page),
            Route("/large/{kilobytes:int}", large),
            Route("/stream", stream),
            Route("/api/items", api),
        ]
    )


def app() -> ASGIApp:
    """The app for ``uvicorn --factory``, from the environment the runner sets."""
    return ConsentMiddleware(
        site(),
        secret_key=SECRET,
        consent_log=os.environ[LOG_ENV],
        log_spool=os.environ.get(SPOOL_ENV),
        trusted_proxies=["127.0.0.1"],
        services=["google-analytics", YOUTUBE],
    )


# -- visitors ----------------------------------------------------------------------------------------------

CHROME: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
SAFARI_MOBILE: Final = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
FIREFOX: Final = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
GOOGLEBOT: Final = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
EXPLICIT_LANGUAGES: Final = ("sv", "pl", "it", "es", "fi", "nl", "fr", "de")


@dataclass(frozen=True)
class Profile:
    """A kind of visitor: where from (a bounded pool of addresses), the browser's languages, and the
    banner language that must follow (SPEC §4), geolocation included."""

    name: str
    country: str | None  # what the bundled database must say of the addresses (checked at start)
    addresses: Callable[[int], str]
    accept_language: str
    language: str
    user_agent: str = CHROME
    gpc: bool = False
    bot: bool = False


ADDRESS_POOL: Final = 256  # distinct addresses per profile


def _v4(prefix: str) -> Callable[[int], str]:
    return lambda n: f"{prefix}.{n // 64}.{n % 64 + 1}"


PROFILES: Final = (
    Profile("be-fr", "BE", _v4("81.246"), "fr-BE,fr;q=0.9,en;q=0.5", "fr"),
    Profile("be-en", "BE", _v4("193.190"), "en-US,en;q=0.9", "nl", SAFARI_MOBILE),
    Profile("be-de", "BE", _v4("91.183"), "de-DE", "de", FIREFOX),
    Profile("nl-en", "NL", _v4("145.0"), "en", "nl"),
    Profile("us-nl", "US", lambda n: f"8.8.{n // 128 + 4}.{n % 128 + 1}", "nl", "en"),
    Profile("private-nl", None, _v4("10.20"), "nl;q=0.8,en;q=0.5", "nl", FIREFOX),
    Profile("private-ja", None, _v4("192.168"), "ja", "en"),
    Profile("be-v6", "BE", lambda n: f"2a02:a03f:{n:x}::7", "pl, en;q=0.3", "nl", SAFARI_MOBILE),
    Profile("gpc", "BE", _v4("78.21"), "fr", "fr", FIREFOX, gpc=True),
    Profile("crawler", "US", lambda n: f"66.249.66.{n % 250 + 1}", "en", "en", GOOGLEBOT, bot=True),
)


def check_profiles() -> None:
    """The language expectations rest on what the bundled database says of each pool: check it once."""
    path = bundled_database()
    if path is None:
        raise SystemExit(
            "the soak needs the bundled geolocation database: pip install --no-deps python-geoacumen"
        )
    locator = GeoLocator(path)
    for profile in PROFILES:
        for number in (0, ADDRESS_POOL // 2, ADDRESS_POOL - 1):
            address = profile.addresses(number)
            found = locator.country(address)
            if profile.country is not None and found != profile.country:
                raise SystemExit(f"profile {profile.name}: {address} is in {found}, not {profile.country}")
            if profile.country is None and ipaddress.ip_address(address).is_global:
                raise SystemExit(f"profile {profile.name}: {address} is not a private address")


@dataclass
class Visitor:
    profile: Profile
    address: str
    jar: dict[str, str] = field(default_factory=dict)
    #: The optional categories the visitor's consent cookie grants; ``None``: no decision yet.
    granted: frozenset[str] | None = None
    consent_id: str | None = None
    decisions: int = 0  # confirmed decisions and withdrawals
    last_method: str | None = None

    @classmethod
    def arrive(cls, rng: random.Random) -> Visitor:
        profile = rng.choice(PROFILES)
        # In canonical form, as the server writes it ("2a02:a03f::7", not "2a02:a03f:0::7").
        address = str(ipaddress.ip_address(profile.addresses(rng.randrange(ADDRESS_POOL))))
        visitor = cls(profile, address)
        if not profile.bot and not profile.gpc and rng.random() < 0.1:  # chose a language on an earlier visit
            visitor.jar["consent_lang"] = rng.choice(EXPLICIT_LANGUAGES)
        return visitor

    def language(self, query_lang: str | None) -> str:
        return query_lang or self.jar.get("consent_lang") or self.profile.language


# -- requests and what their answers must be ---------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    def cookies(self) -> dict[str, str]:
        """``Set-Cookie`` by name: the whole header."""
        found = {}
        for key, value in self.headers:
            if key == "set-cookie":
                found[value.partition("=")[0].strip()] = value
        return found


@dataclass
class Planned:
    """One request, and how to check its answer (returns the problems; may update the visitor)."""

    kind: str
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    check: Callable[[Answer], list[str]]


KIND_WEIGHTS: Final = {
    "page": 30,
    "large": 4,
    "stream": 5,
    "api": 16,
    "state": 6,
    "decide": 14,
    "withdraw": 3,
    "preferences": 5,
    "cookies": 3,
    "static": 8,
    "record": 2,
    "gpc": 1,
}
KINDS: Final = tuple(KIND_WEIGHTS)


class Planner:
    """Makes the requests of one connection's visitors, and the checks of their answers."""

    def __init__(self, port: int, seed: int, visitors: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.unique = 0
        self.host = f"127.0.0.1:{port}"
        self.origin = f"http://{self.host}"
        self.visitors = [Visitor.arrive(self.rng) for _ in range(visitors)]
        assets = Assets(url_prefix=f"{PREFIX}/static")
        self.static = [(url, assets.get(url.rpartition("/")[2])) for url in assets.urls.values()]
        self.weights = [KIND_WEIGHTS[kind] for kind in KINDS]

    def next(self) -> Planned:
        rng = self.rng
        slot = rng.randrange(len(self.visitors))
        if rng.random() < 0.02:  # a visitor leaves, a new one arrives
            self.visitors[slot] = Visitor.arrive(rng)
        visitor = self.visitors[slot]
        kind = rng.choices(KINDS, self.weights)[0]
        if visitor.profile.bot and kind in ("decide", "withdraw", "record"):
            kind = "page"
        planned: Planned = getattr(self, f"_{kind}")(visitor)
        return planned

    # headers common to every request of a visitor
    def _headers(
        self, visitor: Visitor, accept: str = "text/html,application/xhtml+xml,*/*;q=0.8"
    ) -> dict[str, str]:
        headers = {
            "Host": self.host,
            "User-Agent": visitor.profile.user_agent,
            "Accept": accept,
            "Accept-Language": visitor.profile.accept_language,
            "X-Forwarded-For": visitor.address,
        }
        if visitor.profile.gpc:
            headers["Sec-GPC"] = "1"
        if visitor.jar:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in visitor.jar.items())
        return headers

    def _remember(self, visitor: Visitor, answer: Answer) -> None:
        """The browser's jar: keep what is set, drop what is expired."""
        for name, header in answer.cookies().items():
            value = header.partition("=")[2].partition(";")[0]
            if "max-age=0" in header.lower():
                visitor.jar.pop(name, None)
            elif name in ("consent_lang", "_ga"):
                visitor.jar[name] = value

    # -- HTML pages --------------------------------------------------------------------------------------

    def _page(self, visitor: Visitor) -> Planned:
        rng = self.rng
        number = rng.randrange(100)
        query_lang = rng.choice(EXPLICIT_LANGUAGES) if rng.random() < 0.05 else None
        query = {"lang": query_lang} if query_lang else {}
        if rng.random() < 0.2:  # a URL never seen before, as links from newsletters and searches give
            self.unique += 1
            query |= {"utm_source": "newsletter", "utm_campaign": f"c{self.seed}-{self.unique}"}
        target = ("/" if number == 0 else f"/page/{number}") + (f"?{urlencode(query)}" if query else "")
        return self._html("page", visitor, target, f"page {number}", query_lang)

    def _large(self, visitor: Visitor) -> Planned:
        size = self.rng.choice(LARGE_SIZES)
        return self._html("large", visitor, f"/large/{size}", f"large {size}", None)

    def _stream(self, visitor: Visitor) -> Planned:
        return self._html("stream", visitor, "/stream", "stream", None)

    def _html(self, kind: str, visitor: Visitor, target: str, name: str, query_lang: str | None) -> Planned:
        granted = visitor.granted
        decided = granted is not None
        analytics = granted is not None and "analytics" in granted
        marketing = granted is not None and "marketing" in granted
        language = visitor.language(query_lang)
        language_cookie = visitor.jar.get("consent_lang")
        banner = not decided and not visitor.profile.bot

        def check(answer: Answer) -> list[str]:
            problems = expect_status(answer, 200)
            if problems:
                return problems
            body = answer.body
            if not (answer.header("content-type") or "").startswith("text/html"):
                problems.append(f"content-type {answer.header('content-type')}")
            if "Cookie" not in (answer.header("vary") or "") or "private" not in (
                answer.header("cache-control") or ""
            ):
                problems.append(
                    f"vary {answer.header('vary')!r}, cache-control {answer.header('cache-control')!r}"
                )
            if not body.endswith(f"{end_marker(name)}\n</main>\n</body>\n</html>\n".encode()):
                problems.append(f"the page is not whole: ends with {body[-80:]!r}")
            has_banner = b'<div id="consent-banner"' in body
            if has_banner != banner:
                problems.append(f"banner {'missing' if banner else 'present'} (decided {decided})")
            elif banner and f'<div id="consent-banner" lang="{language}"'.encode() not in body:
                found = re.search(rb'<div id="consent-banner" lang="([^"]*)"', body)
                problems.append(f"banner in {found.group(1) if found else None!r}, expected {language}")
            if (b'id="consent-settings"' in body) != decided:
                problems.append(f"settings control {'missing' if decided else 'present'}")
            if (GA_SCRIPT.encode() in body) != analytics:
                problems.append(f"GA script {'gated' if analytics else 'not gated'} (granted {granted})")
            if kind != "page" and (YOUTUBE_IFRAME.encode() in body) != marketing:
                problems.append(f"YouTube iframe {'gated' if marketing else 'not gated'} (granted {granted})")
            if ("_ga" in answer.cookies()) != analytics:
                problems.append(f"_ga cookie {'dropped' if analytics else 'passed'} (granted {granted})")
            if visitor.profile.gpc and banner and b"consent-gpc" not in body:
                problems.append("no Global Privacy Control line in the banner")
            length = answer.header("content-length")
            if kind == "stream":
                if length is not None or answer.header("transfer-encoding") != "chunked":
                    problems.append(f"streamed page with content-length {length}")
            elif length != str(len(body)):
                problems.append(f"content-length {length} for {len(body)} bytes")
            remembered = answer.cookies().get("consent_lang") or ""
            if (
                query_lang
                and query_lang != language_cookie
                and f"consent_lang={query_lang}" not in remembered
            ):
                problems.append(f"?lang={query_lang} not remembered")
            self._remember(visitor, answer)
            return problems

        return Planned(kind, "GET", target, self._headers(visitor), b"", check)

    # -- the app's JSON API ------------------------------------------------------------------------------

    def _api(self, visitor: Visitor) -> Planned:
        number = self.rng.randrange(50)
        granted = visitor.granted
        decided = granted is not None
        analytics = granted is not None and "analytics" in granted
        saw_ga = analytics and "_ga" in visitor.jar
        client = visitor.address if analytics else truncated(visitor.address)
        user_agent = visitor.profile.user_agent if analytics else "Mozilla/5.0 (withheld until consent)"
        expected_items = api_items(number)

        def check(answer: Answer) -> list[str]:
            problems = expect_status(answer, 200)
            if problems:
                return problems
            if answer.header("content-type") != "application/json":
                problems.append(f"content-type {answer.header('content-type')}")
            if answer.header("set-cookie") is not None:
                problems.append(f"a cookie set on the API: {answer.header('set-cookie')}")
            data = json.loads(answer.body)
            seen = {
                key: data.get(key)
                for key in ("page", "decided", "analytics", "saw_ga", "client", "user_agent")
            }
            wanted = {
                "page": number,
                "decided": decided,
                "analytics": analytics,
                "saw_ga": saw_ga,
                "client": client,
                "user_agent": user_agent,
            }
            if seen != wanted or data.get("items") != expected_items:
                problems.append(f"the app saw {seen}, expected {wanted}")
            return problems

        return Planned(
            "api", "GET", f"/api/items?page={number}", self._headers(visitor, "application/json"), b"", check
        )

    # -- decisions -----------------------------------------------------------------------------------------

    def _decide(self, visitor: Visitor) -> Planned:
        rng = self.rng
        decision = rng.choice(("accept_all", "reject_all", "custom"))
        chosen = (
            sorted(rng.sample(OPTIONAL, rng.randrange(len(OPTIONAL) + 1))) if decision == "custom" else []
        )
        granted = {
            "accept_all": frozenset(OPTIONAL),
            "reject_all": frozenset(),
            "custom": frozenset(chosen),
        }[decision]
        return self._post(
            visitor, "decide", PREFIX, {"decision": decision, "categories": chosen}, granted, decision
        )

    def _withdraw(self, visitor: Visitor) -> Planned:
        return self._post(visitor, "withdraw", f"{PREFIX}/withdraw", {}, frozenset(), "withdraw")

    def _post(
        self,
        visitor: Visitor,
        kind: str,
        target: str,
        fields: dict[str, object],
        granted: frozenset[str],
        method: str,
    ) -> Planned:
        rng = self.rng
        as_json = rng.random() < 0.5
        provenance = rng.choices(("origin", "referer", "none", "cross-site"), (60, 20, 17, 3))[0]
        headers = self._headers(visitor, "application/json" if as_json else "text/html,*/*;q=0.8")
        page = f"/page/{rng.randrange(100)}"
        if provenance == "origin":
            headers["Origin"] = self.origin
        elif provenance == "referer":
            headers["Referer"] = f"{self.origin}{page}"
        elif provenance == "cross-site":
            headers["Origin"] = "https://evil.example"
        next_path = None
        if as_json:
            headers["Content-Type"] = "application/json"
            body = json.dumps(fields).encode()
        else:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            pairs: list[tuple[str, str]] = []
            if "decision" in fields:
                pairs.append(("decision", str(fields["decision"])))
            categories = fields.get("categories")
            pairs += [("categories", name) for name in categories] if isinstance(categories, list) else []
            if rng.random() < 0.5:
                next_path = f"/page/{rng.randrange(100)}?from=banner"
                pairs.append(("next", next_path))
            body = urlencode(pairs).encode()
        previous_id = visitor.consent_id
        had_ga = "_ga" in visitor.jar
        language = visitor.language(None)

        def check(answer: Answer) -> list[str]:
            if provenance == "cross-site":
                problems = expect_status(answer, 403)
                if "consent" in answer.cookies():
                    problems.append("a cross-site POST got a consent cookie")
                return problems
            problems = expect_status(answer, 200 if as_json else 303)
            if problems:
                return problems
            cookie = answer.cookies().get("consent")
            if cookie is None:
                return ["no consent cookie"]
            if as_json:
                state = json.loads(answer.body)
                categories = {name: name in granted for name in OPTIONAL} | {"necessary": True}
                wanted = {"decided": True, "categories": categories, "method": method, "language": language}
                seen = {key: state.get(key) for key in wanted}
                if seen != wanted:
                    problems.append(f"state {seen}, expected {wanted}")
                if previous_id is not None and state.get("consent_id") != previous_id:
                    problems.append(f"consent id {state.get('consent_id')} replaced {previous_id}")
                consent_id = state.get("consent_id")
            else:
                location = answer.header("location")
                wanted_location = next_path or (page if provenance == "referer" else "/")
                if location != wanted_location:
                    problems.append(f"redirected to {location}, expected {wanted_location}")
                consent_id = previous_id
            expired = answer.cookies().get("_ga")
            if had_ga and "analytics" not in granted and (expired is None or "Max-Age=0" not in expired):
                problems.append("the refused _ga cookie was not expired")
            if not problems:
                visitor.jar["consent"] = cookie.partition("=")[2].partition(";")[0]
                visitor.granted = granted
                visitor.consent_id = consent_id if isinstance(consent_id, str) else None
                visitor.decisions += 1
                visitor.last_method = method
                if "analytics" not in granted:
                    visitor.jar.pop("_ga", None)
            return problems

        return Planned(kind, "POST", target, headers, body, check)

    # -- the other endpoints ---------------------------------------------------------------------------------

    def _state(self, visitor: Visitor) -> Planned:
        granted = visitor.granted
        language = visitor.language(None)

        def check(answer: Answer) -> list[str]:
            problems = expect_status(answer, 200)
            if problems:
                return problems
            state = json.loads(answer.body)
            wanted = {
                "decided": granted is not None,
                "categories": {name: name in (granted or ()) for name in OPTIONAL} | {"necessary": True},
                "language": language,
                "gpc": visitor.profile.gpc,
            }
            if visitor.consent_id is not None:
                wanted["consent_id"] = visitor.consent_id
            seen = {key: state.get(key) for key in wanted}
            if seen != wanted:
                problems.append(f"state {seen}, expected {wanted}")
            return problems

        return Planned("state", "GET", PREFIX, self._headers(visitor, "application/json"), b"", check)

    def _preferences(self, visitor: Visitor) -> Planned:
        granted = visitor.granted or frozenset()
        language = visitor.language(None)

        def check(answer: Answer) -> list[str]:
            problems = expect_status(answer, 200)
            if problems:
                return problems
            body = answer.body
            if (
                answer.header("content-language") != language
                or f'<html lang="{language}">'.encode() not in body
            ):
                problems.append(f"preferences in {answer.header('content-language')}, expected {language}")
            for name in OPTIONAL:
                ticked = re.search(rf'id="consent-cat-{name}"[^>]*checked'.encode(), body) is not None
                if ticked != (name in granted):
                    problems.append(
                        f"{name} {'ticked' if ticked else 'unticked'} for granted {sorted(granted)}"
                    )
            if not body.rstrip().endswith(b"</html>"):
                problems.append("the preferences page is not whole")
            return problems

        return Planned(
            "preferences", "GET", f"{PREFIX}/preferences?next=/page/3", self._headers(visitor), b"", check
        )

    def _cookies(self, visitor: Visitor) -> Planned:
        language = visitor.language(None)

        def check(answer: Answer) -> list[str]:
            problems = expect_status(answer, 200)
            body = answer.body
            if not problems and not all(
                name in body for name in (b"_ga", b"consent_lang", b"VISITOR_INFO1_LIVE")
            ):
                problems.append("the cookie declaration lacks _ga, consent_lang or VISITOR_INFO1_LIVE")
            if not problems and answer.header("content-language") != language:
                problems.append(f"cookie page in {answer.header('content-language')}, expected {language}")
            if not problems and b"Geoacumen" not in body:
                problems.append("no credit for the geolocation database")
            return problems

        return Planned("cookies", "GET", f"{PREFIX}/cookies", self._headers(visitor), b"", check)

    def _static(self, visitor: Visitor) -> Planned:
        url, asset = self.rng.choice(self.static)
        assert asset is not None
        headers = self._headers(visitor, "*/*")
        revalidate = self.rng.random() < 0.25
        if revalidate:
            headers["If-None-Match"] = asset.etag

        def check(answer: Answer) -> list[str]:
            if revalidate:
                problems = expect_status(answer, 304)
                return problems + ([f"a 304 with a body of {len(answer.body)} bytes"] if answer.body else [])
            problems = expect_status(answer, 200)
            if not problems and (answer.body != asset.body or answer.header("etag") != asset.etag):
                problems.append(f"{url}: {len(answer.body)} bytes, etag {answer.header('etag')}")
            if not problems and "immutable" not in (answer.header("cache-control") or ""):
                problems.append(f"{url}: cache-control {answer.header('cache-control')}")
            return problems

        return Planned("static", "GET", url, headers, b"", check)

    def _record(self, visitor: Visitor) -> Planned:
        decided = visitor.granted is not None
        consent_id = visitor.consent_id
        confirmed = visitor.decisions  # all under one consent id: the first decision made it

        def check(answer: Answer) -> list[str]:
            problems = expect_status(answer, 200)
            if problems:
                return problems
            record = json.loads(answer.body)
            entries = record.get("entries")
            if not isinstance(entries, list):
                return [f"record without entries: {answer.body[:120]!r}"]
            if not decided:
                if record.get("consent_id") is not None or entries:
                    problems.append(f"an undecided visitor has a record: {answer.body[:120]!r}")
                return problems
            if consent_id is not None and record.get("consent_id") != consent_id:
                problems.append(f"record of {record.get('consent_id')}, expected {consent_id}")
            if len(entries) != confirmed:
                problems.append(f"{len(entries)} entries for {confirmed} confirmed decisions")
            elif [entry.get("method") for entry in entries][-1:] != [visitor.last_method]:
                problems.append(f"last entry {entries[-1].get('method')}, expected {visitor.last_method}")
            if not problems and consent_id is None:  # the first decision was a form: learn the id here
                found = record.get("consent_id")
                visitor.consent_id = found if isinstance(found, str) else None
            return problems

        return Planned(
            "record", "GET", f"{PREFIX}/record", self._headers(visitor, "application/json"), b"", check
        )

    def _gpc(self, visitor: Visitor) -> Planned:
        def check(answer: Answer) -> list[str]:
            problems = expect_status(answer, 200)
            if not problems and json.loads(answer.body).get("gpc") is not True:
                problems.append(f"gpc.json: {answer.body!r}")
            return problems

        return Planned(
            "gpc", "GET", "/.well-known/gpc.json", self._headers(visitor, "application/json"), b"", check
        )


def expect_status(answer: Answer, status: int) -> list[str]:
    if answer.status == status:
        return []
    return [f"HTTP {answer.status}, expected {status}: {answer.body[:160]!r}"]


def truncated(address: str) -> str:
    """What the app must see before device consent: IPv4 to /24, IPv6 to /48."""
    parsed = ipaddress.ip_address(address)
    prefix = 24 if parsed.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


# -- the HTTP client -----------------------------------------------------------------------------------------


class ConnectionLost(Exception):
    pass


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        raise ConnectionLost(f"closed before an answer ({len(error.partial)} bytes of head)") from None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
    answer = Answer(status, headers, b"")
    if status in (204, 304) or status < 200:
        return answer
    try:
        if (answer.header("transfer-encoding") or "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            answer.body = b"".join(parts)
        elif (length := answer.header("content-length")) is not None:
            answer.body = await reader.readexactly(int(length))
        else:
            answer.body = await reader.read()
    except asyncio.IncompleteReadError as error:
        raise ConnectionLost(f"closed mid-body after {len(error.partial)} bytes") from None
    return answer


def request_bytes(planned: Planned) -> bytes:
    lines = [f"{planned.method} {planned.target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in planned.headers.items()]
    if planned.method == "POST":
        lines.append(f"Content-Length: {len(planned.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + planned.body


@dataclass
class Tally:
    by_kind: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # by class: lost, timeout, 5xx, mismatch
    examples: list[str] = field(default_factory=list)
    confirmed_decisions: int = 0
    connections_opened: int = 0

    def error(self, what: str, detail: str) -> None:
        self.errors[what] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{what}: {detail}")


async def connection_loop(port: int, planner: Planner, tally: Tally, until: float) -> None:
    loop = asyncio.get_running_loop()
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while loop.time() < until:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                tally.connections_opened += 1
            assert reader is not None
            planned = planner.next()
            tally.by_kind[planned.kind] += 1
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    writer.write(request_bytes(planned))
                    answer = await read_answer(reader)
            except (ConnectionLost, ConnectionError) as error:
                tally.error("lost connection", f"{planned.kind} {planned.target}: {error}")
                writer.close()
                writer = None
                continue
            except TimeoutError:
                tally.error(
                    "timeout", f"{planned.kind} {planned.target}: no answer in {REQUEST_TIMEOUT:.0f} s"
                )
                writer.close()
                writer = None
                continue
            tally.statuses[answer.status] += 1
            if answer.status >= 500:
                tally.error(
                    "5xx", f"{planned.kind} {planned.target}: HTTP {answer.status} {answer.body[:160]!r}"
                )
            else:
                try:
                    problems = planned.check(answer)
                except (ValueError, KeyError, TypeError) as error:  # an unreadable body
                    problems = [f"{type(error).__name__}: {error}; body {answer.body[:160]!r}"]
                if problems:
                    tally.error("mismatch", f"{planned.kind} {planned.target}: {'; '.join(problems)}")
                elif planned.kind in ("decide", "withdraw") and answer.status in (200, 303):
                    tally.confirmed_decisions += 1
                if (answer.header("connection") or "").lower() == "close":
                    tally.error("closed by the server", f"{planned.kind} {planned.target}")
            if (answer.header("connection") or "").lower() == "close":
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


# -- the server, its memory, and the run ---------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class Sample:
    seconds: float
    rss_mb: float
    requests: int


async def sample_memory(pid: int, tally: Tally, samples: list[Sample], every: float, start: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)  # a sampling period, not a synchronisation
        rss = rss_mb(pid)
        if rss is not None:
            samples.append(Sample(loop.time() - start, rss, sum(tally.by_kind.values())))


@contextlib.contextmanager
def server(work: Path, *, pin: bool) -> Iterator[tuple[int, int, subprocess.Popen[bytes]]]:
    """uvicorn serving ``app`` in a subprocess, logging to an SQLite file in ``work``; its port, process
    id and process, once it accepts connections (``taskset`` execs uvicorn: the process id is uvicorn's)."""
    environment = {LOG_ENV: f"sqlite:///{work / 'consent-log.sqlite3'}", SPOOL_ENV: str(work / "spool")}
    served = uvicorn_server("benchmarks.soak:app", environment, pin=pin, cwd=work, log=work / "server.log")
    with served as (port, process):
        yield port, process.pid, process


def server_log(work: Path) -> str:
    return log_tail(work / "server.log")


@dataclass
class SoakResult:
    duration: float
    connections: int
    warmup: float
    tally: Tally
    samples: list[Sample]
    server_exit: int | None = None
    server_errors: list[str] = field(default_factory=list)
    logged: int | None = None
    chain_ok: bool | None = None
    chain_problems: list[str] = field(default_factory=list)
    stack: str = ""
    cpu_seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.tally.by_kind.values())

    @property
    def errors(self) -> int:
        return sum(self.tally.errors.values())

    @property
    def rss_after_warmup(self) -> Sample | None:
        return next((sample for sample in self.samples if sample.seconds >= self.warmup), None)

    @property
    def rss_end(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    @property
    def rss_growth(self) -> float | None:
        start, end = self.rss_after_warmup, self.rss_end
        return None if start is None or end is None or end is start else end.rss_mb - start.rss_mb

    def problems(self, *, check_memory: bool) -> list[str]:
        found = []
        if self.errors:
            found.append(f"{self.errors} errors: {dict(self.tally.errors)}")
        if any(status >= 500 for status in self.tally.statuses):
            found.append(f"5xx answers: {dict(self.tally.statuses)}")
        missing = [kind for kind in KINDS if not self.tally.by_kind[kind]]
        if missing:
            found.append(f"kinds never requested: {missing}")
        if self.server_errors:
            found.append(f"the server logged errors: {self.server_errors[:5]}")
        if self.logged != self.tally.confirmed_decisions:
            found.append(
                f"{self.logged} log entries for {self.tally.confirmed_decisions} confirmed decisions"
            )
        if self.chain_ok is not True:
            found.append(f"the consent log's chain does not verify: {self.chain_problems[:3]}")
        if check_memory:
            growth = self.rss_growth
            if growth is None:
                found.append("too few memory samples after the warm-up")
            elif growth > RSS_GROWTH_LIMIT_MB:
                found.append(
                    f"resident memory grew {growth:.1f} MB after the warm-up (limit {RSS_GROWTH_LIMIT_MB})"
                )
        return found


def run_soak(
    *,
    duration: float,
    connections: int,
    warmup: float = 30.0,
    sample_every: float = 5.0,
    pin: bool = False,
    seed: int = 8,
) -> SoakResult:
    """The whole soak: server up, load for ``duration`` s on ``connections`` connections, server down,
    log counted and verified. ``pin``: server on CPU 0, this process on CPU 1 (changes this process's
    affinity: for the command line, not inside a test run)."""
    check_profiles()
    tally = Tally()
    samples: list[Sample] = []
    with tempfile.TemporaryDirectory(prefix="consent-soak-") as directory:
        work = Path(directory)
        result = SoakResult(duration, connections, warmup, tally, samples)
        result.stack = f"uvicorn ({'uvloop + httptools' if fast_stack() else 'default loop and http'})"
        with server(work, pin=pin) as (port, pid, process):
            if pin:
                os.sched_setaffinity(0, {LOAD_CPU})
            cpu_before = cpu_seconds(pid)

            async def main() -> None:
                loop = asyncio.get_running_loop()
                start = loop.time()
                until = start + duration
                sampler = asyncio.create_task(sample_memory(pid, tally, samples, sample_every, start))
                planners = [Planner(port, seed * 1000 + number, 24) for number in range(connections)]
                try:
                    await asyncio.gather(
                        *(connection_loop(port, planner, tally, until) for planner in planners)
                    )
                finally:
                    sampler.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sampler
                rss = rss_mb(pid)
                if rss is not None:
                    samples.append(Sample(loop.time() - start, rss, result.requests))

            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                runner.run(main())
            result.cpu_seconds = cpu_seconds(pid) - cpu_before
        result.server_exit = process.returncode
        log_text = server_log(work)
        result.server_errors = [
            line for line in log_text.splitlines() if "ERROR" in line or "Traceback" in line
        ]
        log = open_log(
            f"sqlite:///{work / 'consent-log.sqlite3'}",
            secret_keys=(SECRET,),
            spool_path=work / "reader.spool",
        )
        assert log is not None
        try:
            report = log.verify()
        finally:
            asyncio.run(log.close())
        result.logged = report.checked
        result.chain_ok = report.ok
        result.chain_problems = [str(problem) for problem in report.problems]
    return result


def summary(result: SoakResult) -> str:
    tally = result.tally
    lines = [
        f"soak: {result.duration:g} s, {result.connections} connections, {result.stack}",
        f"requests: {result.requests:,} ({result.requests / result.duration:,.0f}/s); "
        f"connections opened: {tally.connections_opened}; server CPU {result.cpu_seconds:.0f} s",
        "  by kind: " + ", ".join(f"{kind} {tally.by_kind[kind]:,}" for kind in KINDS),
        "statuses: " + ", ".join(f"{status} {count:,}" for status, count in sorted(tally.statuses.items())),
        f"errors: {result.errors}" + (f" {dict(tally.errors)}" if result.errors else ""),
    ]
    lines += [f"  {example}" for example in tally.examples[:10]]
    lines.append(
        "RSS (MB) every sample: "
        + ", ".join(f"{sample.seconds:.0f}s {sample.rss_mb:.1f}" for sample in result.samples)
    )
    start, end, growth = result.rss_after_warmup, result.rss_end, result.rss_growth
    if start is not None and end is not None and growth is not None:
        lines.append(
            f"RSS after the warm-up ({start.seconds:.0f} s): {start.rss_mb:.1f} MB; "
            f"at the end ({end.seconds:.0f} s): "
            f"{end.rss_mb:.1f} MB; growth {growth:+.1f} MB ({growth / start.rss_mb:+.1%}); "
            f"limit {RSS_GROWTH_LIMIT_MB:g} MB"
        )
    lines.append(
        f"consent log: {result.logged} entries for {tally.confirmed_decisions} confirmed decisions "
        "and withdrawals; "
        f"chain {'verifies' if result.chain_ok else 'DOES NOT VERIFY'}"
    )
    lines.append(
        f"server: exit status {result.server_exit}, {len(result.server_errors)} error lines in its log"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections (default 64)")
    parser.add_argument(
        "--warmup", type=float, default=30.0, help="seconds before the memory baseline (default 30)"
    )
    parser.add_argument(
        "--sample", type=float, default=5.0, help="seconds between memory samples (default 5)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load to a core each")
    args = parser.parse_args()
    if not 1 <= args.connections <= 1000 or not 0 < args.duration <= 24 * 3600 or not 0 < args.sample <= 60:
        parser.error("--connections 1..1000, --duration up to a day, --sample 0..60 s")
    pin = not args.no_pin and pinning()
    print(
        f"load average before: {' '.join(f'{value:.2f}' for value in os.getloadavg())}; "
        f"{f'server on cpu {SERVER_CPU}, load on cpu {LOAD_CPU}' if pin else 'unpinned'}",
        flush=True,
    )
    result = run_soak(
        duration=args.duration,
        connections=args.connections,
        warmup=args.warmup,
        sample_every=args.sample,
        pin=pin,
    )
    print(summary(result))
    print(f"load average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())} (1, 5, 15 min)")
    memory = args.duration > args.warmup + 2 * args.sample
    problems = result.problems(check_memory=memory)
    if problems:
        print("FAILED: " + "; ".join(problems))
        raise SystemExit(1)
    print("passed" + ("" if memory else " (run too short for the memory check)"))


if __name__ == "__main__":
    main()
