"""HTML pages on their way to the visitor: the markup injected, the gating, the headers (SPEC §3)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import Any, Final, NamedTuple, TypeVar, cast
from urllib.parse import quote

from starlette.types import Message, Scope, Send

from .config import ConsentConfig
from .consent_mode import ConsentModeSnippet, uses_google_tags
from .cookies import CookieRules
from .csp import ContentSecurityPolicy
from .endpoints import VARY_TOKENS, nonce_of
from .gating import GatePolicy
from .privacy import ACCEPT_CH
from .render import Renderer
from .request import Visitor
from .rewriter import HtmlRewriter, PageCache
from .state import ConsentState, CookieWriter

__all__ = ["PageDecorator", "PageMarkup", "PageResponder", "current_path"]

#: Rendered banners and settings controls kept (per language, decision, page path).
MAX_CACHED_MARKUPS: Final = 1024
ACCEPT_CH_BYTES: Final = ACCEPT_CH.encode("latin-1")
#: Charsets whose bytes for "<", ">", quotes and tag names are not ASCII: the rewriter leaves them alone.
UNSAFE_CHARSETS: Final = ("utf-16", "utf-32", "utf16", "utf32", "ucs-2", "ucs2", "utf-7", "utf7")
_F = TypeVar("_F", bound=Callable[..., Any])


class PageMarkup(NamedTuple):
    """What one page gets: its gating policy (None: nothing refused), the markup after ``<head>`` and
    after ``<body>``, and the placeholder renderer for gated iframes."""

    gate: GatePolicy | None
    head_html: bytes
    body_html: bytes
    placeholder: Callable[[str], bytes] | None


class PageDecorator:
    """Built once per middleware: what every HTML page gets, per visitor state (cached where it can be)."""

    def __init__(
        self, *, config: ConsentConfig, renderer: Renderer, cookies: CookieWriter, rules: CookieRules
    ) -> None:
        self._registry = config.registry
        self.nonce_key = config.csp_nonce_key
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
        # (decided, language, gpc, page path) -> banner or settings control, for pages without a nonce.
        self._body_markups: dict[tuple[bool, str, bool, str], bytes] = {}
        # (Visitor.page_key, raw path, path, query) -> all of a page's markup, for pages without a nonce.
        self._markups: dict[tuple[object, ...], PageMarkup] = {}
        self.page_cache = PageCache()
        self.uses_csp = self._csp is not None

    def gate(self, granted: frozenset[str]) -> GatePolicy | None:
        policy = self._gates.get(granted)
        if policy is None:
            policy = self._gates[granted] = GatePolicy.build(self._registry, granted)
        return policy if policy.refused else None

    def nonce(self, scope: Scope) -> str | None:
        """The page's CSP nonce (the app's, or the one CSP mode put in the scope)."""
        return nonce_of(scope, self.nonce_key)

    def head_markup(self, visitor: Visitor, nonce: str | None) -> bytes:
        """What goes right after ``<head>``: the Consent Mode defaults, while Google tags are declared."""
        if self._consent_mode is None:
            return b""
        return self._consent_mode.render(visitor.granted, nonce)

    def placeholder_for(self, visitor: Visitor, nonce: str | None, next_path: str) -> Callable[[str], bytes]:
        """Renders, per gated iframe, the localized "this needs CATEGORY" block with its grant button."""
        # From values only: the function may be kept (see markup) and must hold no request's objects.
        language, granted, reload = visitor.state.language, visitor.granted, self._csp is not None

        def placeholder(category: str) -> bytes:
            return self._renderer.placeholder(
                language=language,
                category=category,
                granted=granted,
                next_path=next_path,
                nonce=nonce,
                reload=reload,
            ).encode("utf-8")

        return placeholder

    def markup(self, visitor: Visitor, scope: Scope, nonce: str | None) -> PageMarkup:
        """Everything a page gets for this visitor: kept per visitor kind and path when no nonce."""
        if nonce is not None:  # one per request: nothing to keep
            return self._markup(visitor, nonce, current_path(scope))
        raw_path, path, query = scope.get("raw_path"), scope.get("path"), scope.get("query_string")
        last = visitor.last_page
        if last is not None and last[0] == raw_path and last[1] == path and last[2] == query:
            return last[3]
        key = (visitor.page_key, raw_path, path, query)
        markup = self._markups.get(key)
        if markup is None:
            markup = self._markup(visitor, None, current_path(scope))
            if len(self._markups) >= MAX_CACHED_MARKUPS:
                self._markups.pop(next(iter(self._markups), key), None)
            self._markups[key] = markup
        visitor.last_page = (raw_path, path, query, markup)
        return markup

    def _markup(self, visitor: Visitor, nonce: str | None, next_path: str) -> PageMarkup:
        gate = self.gate(visitor.granted)
        return PageMarkup(
            gate,
            self.head_markup(visitor, nonce),
            self.body_markup(visitor, nonce, next_path),
            self.placeholder_for(visitor, nonce, next_path) if gate is not None else None,
        )

    def content_security_policy(self, scope: Scope, visitor: Visitor) -> str | None:
        if self._csp is None:
            return None
        return self._csp.header(visitor.granted, nonce_of(scope, self.nonce_key))

    def body_markup(self, visitor: Visitor, nonce: str | None, next_path: str) -> bytes:
        """What goes right after ``<body>``: the banner, or the settings control once decided."""
        if visitor.bot:
            return b""  # crawlers cannot consent; gating still applies to them
        state = visitor.state
        if nonce is not None:  # one per request: nothing to keep
            return self._render_body_markup(state, next_path, nonce)
        key = (state.decided, state.language, state.gpc, next_path)
        markup = self._body_markups.get(key)
        if markup is None:
            markup = self._render_body_markup(state, next_path, None)
            if len(self._body_markups) >= MAX_CACHED_MARKUPS:
                self._body_markups.pop(next(iter(self._body_markups), key), None)
            self._body_markups[key] = markup
        return markup

    def _render_body_markup(self, state: ConsentState, next_path: str, nonce: str | None) -> bytes:
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

    def pending_cookies(self, visitor: Visitor, scope: Scope) -> list[str]:
        """The cookies any response to this request sets (its caller looks at ``has_pending_cookies``
        first: most requests have none)."""
        return self._cookies.pending(visitor.verified, visitor.new_language, secure=visitor.https(scope))


def current_path(scope: Scope) -> str:
    """The request's path and query as sent, for a redirect back to the same page."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else quote(scope.get("path", "/"))
    query = scope.get("query_string", b"")
    return path + ("?" + query.decode("latin-1") if query else "")


@functools.lru_cache(maxsize=256)
def is_rewritable_html(content_type: bytes, content_encoding: bytes) -> bool:
    """An HTML body the rewriter can read: not encoded, in an ASCII-compatible charset."""
    if content_encoding.strip().lower() not in (b"", b"identity"):
        return False
    media_type, _, params = content_type.partition(b";")
    if media_type.strip().lower() != b"text/html":
        return False
    charset = params.lower().partition(b"charset=")[2].strip().strip(b"\"'").decode("latin-1")
    return not charset.startswith(UNSAFE_CHARSETS)


@functools.lru_cache(maxsize=256)
def with_vary(value: bytes | None) -> bytes:
    """A ``Vary`` value naming what the injected markup depends on (``*`` stays as it is)."""
    text = (value or b"").decode("latin-1")
    present = {token.strip().lower() for token in text.split(",") if token.strip()}
    if "*" in present:
        return text.encode("latin-1")
    missing = [token for token in VARY_TOKENS if token.lower() not in present]
    return ", ".join(filter(None, [text.strip(), *missing])).encode("latin-1")


@functools.lru_cache(maxsize=256)
def made_private(value: bytes | None) -> bytes:
    """A ``Cache-Control`` value that keeps shared caches from serving one visitor's page to another
    (never loosens the header)."""
    text = (value or b"").decode("latin-1")
    directives = [item.strip() for item in text.split(",") if item.strip()]
    kept = [
        item for item in directives if item.lower() != "public" and not item.lower().startswith("s-maxage")
    ]
    if not any(item.lower() in ("private", "no-store") for item in kept):
        kept.append("private")
    return ", ".join(kept).encode("latin-1")


#: The ``Vary`` and ``Cache-Control`` of a page whose app set neither.
VARY: Final = with_vary(None)
PRIVATE: Final = made_private(None)


if sys.version_info >= (3, 12):
    mark_coroutine_function = inspect.markcoroutinefunction
else:

    def mark_coroutine_function(function: _F) -> _F:
        """inspect.markcoroutinefunction of Python 3.12, as asgiref does it before: asyncio's marker."""
        function._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
        return function


class Held:
    """What ``send`` returns for a page's start, held back: an awaitable done at once."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return
        yield


HELD: Final = Held()


class PageResponder:
    """Per request: holds ``http.response.start`` until the first body chunk decides the headers."""

    __slots__ = ("_pages", "_passing", "_rewriter", "_scope", "_send", "_visitor", "held")

    def __init__(self, pages: PageDecorator, scope: Scope, visitor: Visitor, send: Send) -> None:
        self._pages = pages
        self._scope = scope
        self._visitor = visitor
        self._send = send
        #: The response's start while it is held back (until the first body chunk).
        self.held: Message | None = None
        # False: not a page to rewrite; True: a page whose first body chunk is still to come; then
        # the rewriter of the rest of a streamed page.
        self._rewriter: HtmlRewriter | bool = False
        #: The response needs nothing from here on (decided by its start).
        self._passing = False

    def send(self, message: Message) -> Awaitable[None]:
        """The app's ``send``. A plain function, not a coroutine: where nothing is held or changed it
        hands on the server's own awaitable (no coroutine of ours per message); marked as a coroutine
        function for those that check (asgiref's async_to_sync)."""
        if self._passing:
            return self._send(message)
        if message["type"] != "http.response.start":
            return self._send_rest(message)
        # Inline, as the lean path for what is no page (a JSON route) ends here.
        content_type = content_encoding = b""
        sets_cookies = False
        headers = message.get("headers", ())
        if type(headers) is not list and type(headers) is not tuple:  # any iterable, says ASGI: read once
            message = {**message, "headers": list(headers)}
            headers = message["headers"]
        for name, value in headers:
            # ASGI asks for lower-case names, but Django sends "Content-Type" (islower: no copy).
            if not name.islower():
                name = name.lower()
            if name == b"content-type":
                content_type = content_type or value
            elif name == b"content-encoding":
                content_encoding = content_encoding or value
            elif name == b"set-cookie":
                sets_cookies = True
        status = message["status"]
        html = (
            status >= 200 and status not in (204, 304) and is_rewritable_html(content_type, content_encoding)
        )
        if html or sets_cookies or self._visitor.has_pending_cookies:
            started = self._start(message, html=html, sets_cookies=sets_cookies)
            return HELD if started is None else self._send(started)
        self._passing = True  # nothing to change in this response
        return self._send(message)

    async def _send_rest(self, message: Message) -> None:
        """A message after a start that was held or changed: a page's body, or what comes instead."""
        kind = message["type"]
        if kind == "http.response.body" and self._rewriter is True:
            # Plain functions, not coroutines, for the work: one coroutine less per message.
            held, message = self._first_body(message)
            if held is not None:
                await self._send(held)
            await self._send(message)
        elif kind == "http.response.body" and self._rewriter:
            rewriter = cast(HtmlRewriter, self._rewriter)
            body = rewriter.feed(message.get("body", b""))
            if not message.get("more_body", False):
                body += rewriter.close()
            await self._send({**message, "body": body})
        else:
            if self.held is not None:  # e.g. trailers before any body: the page goes out as it is
                await self.release()
            await self._send(message)

    def _start(self, message: Message, *, html: bool, sets_cookies: bool) -> Message | None:
        """The start to send now, or None for a page's start, held until its first body chunk."""
        pages, visitor = self._pages, self._visitor
        if html:
            headers = self._page_headers(message.get("headers", ()))
        else:  # a copy: the app may reuse its header list for every request
            headers = [(name.lower(), value) for name, value in message.get("headers", ())]
        if sets_cookies:
            headers = pages.cookie_rules.filter_set_cookies(headers, visitor.granted) or headers
        if visitor.has_pending_cookies:
            headers += [
                (b"set-cookie", cookie.encode("latin-1"))
                for cookie in pages.pending_cookies(visitor, self._scope)
            ]
        message = {**message, "headers": headers}
        if not html or self._scope["method"] == "HEAD":
            # HEAD: the GET body gets markup added, so its length is not this one's (left out above).
            self._passing = True
            return message
        self._rewriter = True
        self.held = message
        return None

    def _page_headers(self, raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The app's headers for an HTML page the markup goes into: names lower-cased, ``Vary`` and
        ``Cache-Control`` amended, ``Content-Length`` left out (the body's length changes)."""
        headers = []
        vary = cache_control = None
        for name, value in raw:
            lowered = name.lower()
            if lowered == b"vary":
                vary = value if vary is None else vary
            elif lowered == b"cache-control":
                cache_control = value if cache_control is None else cache_control
            elif lowered != b"content-length":
                headers.append((lowered, value))
        headers.append((b"vary", VARY if vary is None else with_vary(vary)))
        headers.append((b"cache-control", PRIVATE if cache_control is None else made_private(cache_control)))
        if self._visitor.device_granted:
            headers.append((b"accept-ch", ACCEPT_CH_BYTES))
        if self._pages.uses_csp:
            policy = self._pages.content_security_policy(self._scope, self._visitor)
            if policy is not None:
                headers.append((b"content-security-policy", policy.encode("latin-1")))
        return headers

    def _first_body(self, message: Message) -> tuple[Message | None, Message]:
        """The first body chunk: the whole page (rewritten at once, maybe from the page cache) or the
        start of a stream (a rewriter follows it). What to send: the held start (if any), the chunk."""
        pages, scope, visitor = self._pages, self._scope, self._visitor
        held, self.held = self.held, None
        # The middleware gave the app's scope a state dict; most pages have no nonce in it.
        nonce = pages.nonce(scope) if pages.nonce_key in scope["state"] else None
        gate, head_html, body_html, placeholder = pages.markup(visitor, scope, nonce)
        body = message.get("body", b"")
        if held is not None and not message.get("more_body", False):
            body = pages.page_cache.rewrite(
                body,
                key=visitor.granted,
                gate=gate,
                head_html=head_html,
                body_html=body_html,
                placeholder=placeholder,
            )
            held["headers"].append((b"content-length", b"%d" % len(body)))
        else:
            rewriter = self._rewriter = HtmlRewriter(
                head_html=head_html, body_html=body_html, gate=gate, placeholder=placeholder
            )
            body = rewriter.feed(body)
            if not message.get("more_body", False):
                body += rewriter.close()
        return held, {**message, "body": body}

    async def release(self) -> None:
        """A start still held goes out as it is: the app returned or raised, or sent another message,
        before any body chunk."""
        held, self.held = self.held, None
        if held is not None:
            await self._send(held)


mark_coroutine_function(PageResponder.send)
