"""HTML pages on their way to the visitor: the markup injected, the gating, the headers (SPEC §3)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final
from urllib.parse import quote

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import Message, Scope, Send

from .config import ConsentConfig
from .consent_mode import ConsentModeSnippet, uses_google_tags
from .cookies import CookieRules
from .csp import ContentSecurityPolicy
from .endpoints import nonce_of
from .gating import GatePolicy
from .privacy import ACCEPT_CH
from .render import Renderer
from .request import Visit
from .rewriter import HtmlRewriter
from .state import CookieWriter

__all__ = ["PageDecorator", "PageResponder", "current_path"]

VARY_TOKENS: Final = ("Cookie", "Sec-GPC", "Accept-Language")
#: Charsets whose bytes for "<", ">", quotes and tag names are not ASCII: the rewriter leaves them alone.
UNSAFE_CHARSETS: Final = ("utf-16", "utf-32", "utf16", "utf32", "ucs-2", "ucs2", "utf-7", "utf7")


class PageDecorator:
    """Built once per middleware: what every HTML page gets, per visitor state (cached where it can be)."""

    def __init__(
        self, *, config: ConsentConfig, renderer: Renderer, cookies: CookieWriter, rules: CookieRules
    ) -> None:
        self._registry = config.registry
        self._nonce_key = config.csp_nonce_key
        self._renderer = renderer
        self._cookies = cookies
        self.cookie_rules = rules
        self._consent_mode = (
            ConsentModeSnippet() if config.consent_mode and uses_google_tags(config.registry) else None
        )
        self._csp = (
            ContentSecurityPolicy(sources=config.csp, registry=config.registry)
            if config.csp is not None
            else None
        )
        # One policy per set of granted categories: at most 2**categories, built on first use.
        self._gates: dict[frozenset[str], GatePolicy] = {}

    @property
    def uses_csp(self) -> bool:
        return self._csp is not None

    def responder(self, scope: Scope, visit: Visit, send: Send) -> PageResponder:
        return PageResponder(pages=self, scope=scope, visit=visit, send=send)

    def gate(self, granted: frozenset[str]) -> GatePolicy | None:
        policy = self._gates.get(granted)
        if policy is None:
            policy = self._gates[granted] = GatePolicy.build(self._registry, granted)
        return policy if policy.refused else None

    def head_markup(self, scope: Scope, visit: Visit) -> bytes:
        """What goes right after ``<head>``: the Consent Mode defaults, while Google tags are declared."""
        if self._consent_mode is None:
            return b""
        return self._consent_mode.render(visit.granted, nonce_of(scope, self._nonce_key))

    def placeholder_for(self, scope: Scope, visit: Visit) -> Callable[[str], bytes]:
        """Renders, per gated iframe, the localized "this needs CATEGORY" block with its grant button."""
        nonce = nonce_of(scope, self._nonce_key)
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
        return self._csp.header(visit.granted, nonce_of(scope, self._nonce_key))

    def body_markup(self, scope: Scope, visit: Visit) -> bytes:
        """What goes right after ``<body>``: the banner, or the settings control once decided."""
        nonce = nonce_of(scope, self._nonce_key)
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

    def __init__(self, *, pages: PageDecorator, scope: Scope, visit: Visit, send: Send) -> None:
        self._pages = pages
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
        pages, visit = self._pages, self._visit
        # A copy (the app may reuse its header list for every request), with names lower-cased:
        # ASGI asks for that, but Django sends "Content-Type", which MutableHeaders would not find.
        raw = [(name.lower(), value) for name, value in message.get("headers", [])]
        kept = pages.cookie_rules.filter_set_cookies(raw, visit.granted)
        message = {**message, "headers": raw if kept is None else kept}
        headers = MutableHeaders(scope=message)
        for cookie in pages.pending_cookies(visit):
            headers.append("Set-Cookie", cookie)
        status = message["status"]
        if status < 200 or status in (204, 304) or not is_rewritable_html(headers):
            await self._send(message)
            return
        add_vary(headers)
        make_private(headers)
        if visit.device_granted:
            headers["Accept-CH"] = ACCEPT_CH
        policy = pages.content_security_policy(self._scope, visit)
        if policy is not None:
            headers.append("Content-Security-Policy", policy)
        if self._scope["method"] == "HEAD":
            # The GET body gets markup added, so its length is not this one's.
            del headers["content-length"]
            await self._send(message)
            return
        gate = pages.gate(visit.granted)
        self._rewriter = HtmlRewriter(
            head_html=pages.head_markup(self._scope, visit),
            body_html=pages.body_markup(self._scope, visit),
            gate=gate,
            placeholder=pages.placeholder_for(self._scope, visit) if gate is not None else None,
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
