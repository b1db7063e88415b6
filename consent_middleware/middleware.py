"""The ASGI entry: routes a request to the endpoints or the app, and wraps the app's ``send``."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .assets import Assets
from .config import ConsentConfig
from .consent_mode import ConsentModeSnippet, uses_google_tags
from .cookies import CookieRules
from .csp import ContentSecurityPolicy
from .endpoints import Endpoints, nonce_of
from .gating import GatePolicy
from .log import open_log
from .privacy import ACCEPT_CH, reduce_headers, truncate_ip
from .registry import LANGUAGE_COOKIE_MAX_AGE
from .render import Renderer
from .request import Visit, VisitReader
from .rewriter import HtmlRewriter
from .state import CookieWriter, DecisionCodec

__all__ = ["ConsentMiddleware"]

GPC_PATH: Final = "/.well-known/gpc.json"
#: The day this implementation of Global Privacy Control support was last changed.
GPC_LAST_UPDATE: Final = "2026-11-27"
#: Server extensions that would send a file without passing its bytes through ``send``.
FILE_EXTENSIONS: Final = ("http.response.pathsend", "http.response.zerocopysend")
VARY_TOKENS: Final = ("Cookie", "Sec-GPC", "Accept-Language")
#: Charsets whose bytes for "<", ">", quotes and tag names are ASCII, so the rewriter may read them.
UNSAFE_CHARSETS: Final = ("utf-16", "utf-32", "utf16", "utf32", "ucs-2", "ucs2", "utf-7", "utf7")


class ConsentMiddleware:
    """Cookie consent for any ASGI app: banner, signed decision cookie, analytics gating.

    ``secret_key`` is required; every other option has a working default (see the README).
    ``config`` may be a :class:`ConsentConfig` or the path of a TOML file of options, which the
    keyword options override.
    """

    def __init__(
        self, app: ASGIApp, /, *, config: ConsentConfig | str | Path | None = None, **options: Any
    ) -> None:
        self.app = app
        self.config = ConsentConfig.from_options(config, **options)
        config_ = self.config
        codec = DecisionCodec(
            secret_keys=config_.secret_key,
            policy_version=config_.policy_version,
            max_age=config_.consent_max_age,
            categories=tuple(category.name for category in config_.categories),
        )
        cookies = CookieWriter(
            codec=codec, domain=config_.cookie_domain, language_max_age=LANGUAGE_COOKIE_MAX_AGE
        )
        assets = Assets(url_prefix=f"{config_.prefix}/static")
        self._renderer = Renderer(
            registry=config_.registry,
            languages=config_.languages,
            default_language=config_.default_language,
            prefix=config_.prefix,
            static_urls=assets.urls,
            texts=config_.texts,
            settings_button=config_.settings_button,
        )
        self._reader = VisitReader(config=config_, codec=codec)
        self._cookies = cookies
        self.cookie_rules = CookieRules(
            registry=config_.registry, block_unknown=config_.block_unknown_cookies
        )
        self._endpoints = Endpoints(
            config=config_,
            cookies=cookies,
            rules=self.cookie_rules,
            renderer=self._renderer,
            assets=assets,
            geo=self._reader.geo,
            # Opens lazily on the first decision: works with or without the ASGI lifespan.
            log=open_log(
                config_.consent_log,
                secret_keys=config_.secret_key,
                spool_path=Path(config_.log_spool) if config_.log_spool is not None else None,
            ),
        )
        self._consent_mode = (
            ConsentModeSnippet() if config_.consent_mode and uses_google_tags(config_.registry) else None
        )
        self._csp = (
            ContentSecurityPolicy(sources=config_.csp, registry=config_.registry)
            if config_.csp is not None
            else None
        )
        # One policy per set of granted categories: at most 2**categories, built on first use.
        self._gates: dict[frozenset[str], GatePolicy] = {}
        self._withheld_headers = tuple(name.encode("latin-1") for name in config_.withheld_headers)
        self._gpc_body = json.dumps({"gpc": True, "lastUpdate": GPC_LAST_UPDATE}).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.config.exclude_paths):
            await self.app(scope, receive, send)
            return
        visit = self._reader.read(scope)
        path: str = scope["path"]
        prefix = self.config.prefix
        if path == prefix or path.startswith(prefix + "/"):
            await self._endpoints(scope, receive, send, visit)
            return
        if path == GPC_PATH and self.config.respect_gpc:
            response = Response(self._gpc_body, media_type="application/json")
            await response(scope, receive, send)
            return

        scope = self._scope_for_app(scope, visit)
        responder = PageResponder(middleware=self, scope=scope, visit=visit, send=send)
        await self.app(scope, receive, responder.send)

    def _scope_for_app(self, scope: Scope, visit: Visit) -> Scope:
        scope = dict(scope)
        extensions = scope.get("extensions")
        if extensions and any(name in extensions for name in FILE_EXTENSIONS):
            # Else a FileResponse of an .html page would go straight to the socket, ungated.
            scope["extensions"] = {
                key: value for key, value in extensions.items() if key not in FILE_EXTENSIONS
            }
        if visit.cookies:
            scope["headers"] = self._without_refused_cookies(scope["headers"], visit.granted)
        client = scope.get("client")
        if visit.device_granted:
            # Behind trusted proxies the app gets the visitor's address, not the proxy's.
            if client and visit.peer.client_ip:
                scope["client"] = (visit.peer.client_ip, client[1])
        else:
            scope["client"] = (truncate_ip(visit.peer.client_ip), 0) if client else None
            scope["headers"] = reduce_headers(scope["headers"], self._withheld_headers)
        state = scope["state"] = dict(scope.get("state") or {})
        state["consent"] = visit.state
        if self._csp is not None and not nonce_of(scope, self.config.csp_nonce_key):
            # CSP mode needs a nonce for what it injects; the app may use this one for its own scripts.
            state[self.config.csp_nonce_key] = secrets.token_urlsafe(18)
        return scope

    def _without_refused_cookies(
        self, headers: list[tuple[bytes, bytes]], granted: frozenset[str]
    ) -> list[tuple[bytes, bytes]]:
        """The app never sees cookies of categories the visitor refused."""
        filtered = []
        for name, value in headers:
            if name == b"cookie":
                kept = self.cookie_rules.filter_cookie_header(value, granted)
                if kept == b"":
                    continue
                value = value if kept is None else kept
            filtered.append((name, value))
        return filtered

    def gate(self, granted: frozenset[str]) -> GatePolicy | None:
        policy = self._gates.get(granted)
        if policy is None:
            policy = self._gates[granted] = GatePolicy.build(self.config.registry, granted)
        return policy if policy.refused else None

    def head_markup(self, scope: Scope, visit: Visit) -> bytes:
        """What goes right after ``<head>``: the Consent Mode defaults, while Google tags are declared."""
        if self._consent_mode is None:
            return b""
        return self._consent_mode.render(visit.granted, nonce_of(scope, self.config.csp_nonce_key))

    def placeholder_for(self, scope: Scope, visit: Visit) -> Callable[[str], bytes]:
        """Renders, per gated iframe, the localized "this needs CATEGORY" block with its grant button."""
        nonce = nonce_of(scope, self.config.csp_nonce_key)
        next_path = current_path(scope)

        def placeholder(category: str) -> bytes:
            return self._renderer.placeholder(
                language=visit.state.language,
                category=category,
                granted=visit.granted,
                next_path=next_path,
                nonce=nonce,
                reload=self._csp is not None,
            ).encode("utf-8")

        return placeholder

    def content_security_policy(self, scope: Scope, visit: Visit) -> str | None:
        if self._csp is None:
            return None
        return self._csp.header(visit.granted, nonce_of(scope, self.config.csp_nonce_key))

    def body_markup(self, scope: Scope, visit: Visit) -> bytes:
        """What goes right after ``<body>``: the banner, or the settings control once decided."""
        nonce = nonce_of(scope, self.config.csp_nonce_key)
        next_path = current_path(scope)
        state = visit.state
        if visit.bot:
            return b""  # crawlers cannot consent; gating still applies to them
        reload = self._csp is not None  # a loaded page's CSP cannot change: the script reloads instead
        if state.decided:
            markup = self._renderer.settings_control(
                language=state.language, next_path=next_path, nonce=nonce, reload=reload
            )
        else:
            markup = self._renderer.banner(
                language=state.language, next_path=next_path, nonce=nonce, gpc=state.gpc, reload=reload
            )
        return markup.encode("utf-8")

    def pending_cookies(self, visit: Visit) -> list[str]:
        return self._cookies.pending(visit.verified, visit.new_language, secure=visit.peer.https)


def current_path(scope: Scope) -> str:
    """The request's path and query as sent, for a redirect back to the same page."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else quote(scope.get("path", "/"))
    query = scope.get("query_string", b"")
    return path + ("?" + query.decode("latin-1") if query else "")


def is_rewritable_html(headers: Headers) -> bool:
    """An HTML body the rewriter can read: not encoded, in an ASCII-compatible charset."""
    if headers.get("content-encoding", "identity").strip().lower() != "identity":
        return False
    media_type, _, params = headers.get("content-type", "").partition(";")
    if media_type.strip().lower() != "text/html":
        return False
    charset = params.lower().partition("charset=")[2].strip().strip("\"'")
    return not charset.startswith(UNSAFE_CHARSETS)


def add_vary(headers: MutableHeaders) -> None:
    present = {token.strip().lower() for token in headers.get("vary", "").split(",") if token.strip()}
    if "*" in present:
        return
    missing = [token for token in VARY_TOKENS if token.lower() not in present]
    if missing:
        headers["Vary"] = ", ".join(filter(None, [headers.get("vary", "").strip(), *missing]))


def make_private(headers: MutableHeaders) -> None:
    """Keep shared caches from serving one visitor's page to another (never loosens the header)."""
    directives = [item.strip() for item in headers.get("cache-control", "").split(",") if item.strip()]
    kept = [
        item for item in directives if item.lower() != "public" and not item.lower().startswith("s-maxage")
    ]
    if not any(item.lower() in ("private", "no-store") for item in kept):
        kept.append("private")
    headers["Cache-Control"] = ", ".join(kept)


class PageResponder:
    """Per request: holds ``http.response.start`` until the first body chunk decides the headers."""

    def __init__(self, *, middleware: ConsentMiddleware, scope: Scope, visit: Visit, send: Send) -> None:
        self._middleware = middleware
        self._scope = scope
        self._visit = visit
        self._send = send
        self._held: Message | None = None
        self._rewriter: HtmlRewriter | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            await self._start(message)
        elif kind == "http.response.body" and self._rewriter is not None:
            await self._body(message, self._rewriter)
        else:
            await self._flush_held(streaming=True)
            await self._send(message)

    async def _start(self, message: Message) -> None:
        middleware, visit = self._middleware, self._visit
        raw = message.get("headers", [])
        kept = middleware.cookie_rules.filter_set_cookies(raw, visit.granted)
        # A copy: the app may reuse its header list (a module-level Response) for every request.
        message = {**message, "headers": list(raw) if kept is None else kept}
        headers = MutableHeaders(scope=message)
        for cookie in middleware.pending_cookies(visit):
            headers.append("Set-Cookie", cookie)
        status = message["status"]
        if status < 200 or status in (204, 304) or not is_rewritable_html(headers):
            await self._send(message)
            return
        add_vary(headers)
        make_private(headers)
        if visit.device_granted:
            headers["Accept-CH"] = ACCEPT_CH
        policy = middleware.content_security_policy(self._scope, visit)
        if policy is not None:
            headers.append("Content-Security-Policy", policy)
        if self._scope["method"] == "HEAD":
            # The GET body gets markup added, so its length is not this one's.
            del headers["content-length"]
            await self._send(message)
            return
        gate = middleware.gate(visit.granted)
        self._rewriter = HtmlRewriter(
            head_html=middleware.head_markup(self._scope, visit),
            body_html=middleware.body_markup(self._scope, visit),
            gate=gate,
            placeholder=middleware.placeholder_for(self._scope, visit) if gate is not None else None,
        )
        self._held = message

    async def _body(self, message: Message, rewriter: HtmlRewriter) -> None:
        more_body = message.get("more_body", False)
        body = rewriter.feed(message.get("body", b""))
        if not more_body:
            body += rewriter.close()
        if self._held is not None and not more_body:
            # The whole page in one chunk: its new length is known.
            MutableHeaders(scope=self._held)["content-length"] = str(len(body))
        await self._flush_held(streaming=more_body)
        await self._send({**message, "body": body})

    async def _flush_held(self, *, streaming: bool) -> None:
        held, self._held = self._held, None
        if held is not None:
            if streaming:
                del MutableHeaders(scope=held)["content-length"]
            await self._send(held)
