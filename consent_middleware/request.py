"""A request as the middleware sees it: its visitor (verified decision, address, consent state, shared
by the requests with the same identifying headers) and, for the middleware's own routes, the rest."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import Scope

from .config import BundledDatabase, ConsentConfig
from .cookies import CookieRules
from .geo import GeoLocator, bundled_database
from .language import resolve_language, valid_language
from .privacy import Device, device_of, is_bot, truncate_ip
from .proxy import Peer, normal_ip, resolve_peer
from .registry import CONSENT_COOKIE, LANGUAGE_COOKIE
from .state import ConsentState, DecisionCodec, VerifiedDecision

if TYPE_CHECKING:
    from .pages import PageMarkup

__all__ = ["Visit", "VisitReader", "Visitor"]

logger = logging.getLogger("consent_middleware")

#: A query string longer than this is not searched for ``lang``.
MAX_QUERY_BYTES: Final = 4096
#: Visitors kept by their identifying headers (up to this many bytes of them).
MAX_KNOWN_VISITORS: Final = 1024
MAX_KNOWN_VISITOR_BYTES: Final = 6144
#: Parsed ``Cookie`` headers kept (only headers up to MAX_CACHED_COOKIE_HEADER characters).
MAX_CACHED_COOKIE_HEADERS: Final = 1024
MAX_CACHED_COOKIE_HEADER: Final = 4096


class Visitor:
    """What a request's identifying headers tell about its visitor: the consent cookie verified, the
    client address, the consent state (language, GPC, device data: worked out on first read).

    Requests that send the same ``Cookie``, ``User-Agent``, ``Accept-Language`` and ``Sec-GPC`` from
    the same address (behind trusted proxies: with the same scheme, ``Forwarded``,
    ``X-Forwarded-For`` and ``X-Forwarded-Proto``) share one (a visitor sends the same ones request
    after request), while the decision in the cookie is live (``valid_from``..``valid_until``): the
    state is read-only.
    """

    __slots__ = (
        "_page_key",
        "app_cookie",
        "client_ip",
        "cookie_header",
        "device_granted",
        "granted",
        "has_pending_cookies",
        "last_page",
        "new_language",
        "refuses_cookies",
        "secure",
        "shareable",
        "state",
        "truncated_client",
        "user_agent",
        "valid_from",
        "valid_until",
        "verified",
    )
    _page_key: tuple[bool, frozenset[str], str, bool, bool]

    def __init__(
        self,
        cookie_header: str | None,
        verified: VerifiedDecision | None,
        client_ip: str | None,
        granted: frozenset[str],
        device_granted: bool,
        state: ConsentState,
        valid_from: float,
        valid_until: float,
        shareable: bool,
        user_agent: bytes,
        refuses_cookies: bool,
        app_cookie: bytes | None,
    ) -> None:
        self.cookie_header = cookie_header
        self.verified = verified
        self.client_ip = client_ip
        #: What the app sees of the client before the device category is granted (no port).
        self.truncated_client = (truncate_ip(client_ip), 0)
        self.granted = granted
        self.device_granted = device_granted
        self.state = state
        self.valid_from = valid_from
        self.valid_until = valid_until
        #: May other requests with the same identifying headers use it (not with ``?lang=``)?
        self.shareable = shareable
        self.user_agent = user_agent
        #: Whether a cookie the app receives may be refused (a ``Cookie`` header, a category with
        #: cookies not granted), and the ``Cookie`` header as the app sees it (``b""``: not at all;
        #: ``None``: unchanged).
        self.refuses_cookies = refuses_cookies
        self.app_cookie = app_cookie
        #: A valid ``?lang=`` that differs from the language cookie: the response remembers it (a
        #: visitor of one request only).
        self.new_language: str | None = None
        #: Whether any response sets a cookie (a re-signed decision, a language choice).
        self.has_pending_cookies = verified is not None and verified.needs_rotation
        #: The last page's raw path, path and query, and its markup (kept by PageDecorator.markup:
        #: a visitor asks for the same page again and again).
        self.last_page: tuple[object, object, object, PageMarkup] | None = None
        #: Whether the connection is HTTPS, when known from trusted proxies (None: the scope's scheme).
        self.secure: bool | None = None

    def https(self, scope: Scope) -> bool:
        """Whether the visitor's connection is HTTPS (for the ``Secure`` cookie flag)."""
        if self.secure is not None:
            return self.secure
        return scope.get("scheme") in ("https", "wss")

    @property
    def bot(self) -> bool:
        """A crawler (undecided visitors only): it gets no banner."""
        return not self.verified and is_bot(self.user_agent.decode("latin-1"))  # cached per user agent

    @property
    def page_key(self) -> tuple[bool, frozenset[str], str, bool, bool]:
        """What the markup a page gets depends on, besides the page's path: decided, granted,
        language, GPC, crawler (worked out on the first page)."""
        try:
            return self._page_key
        except AttributeError:
            state = self.state
            self._page_key = key = (state.decided, self.granted, state.language, state.gpc, self.bot)
            return key


class Visit:
    """One request to the middleware's own routes, as read by :class:`VisitReader`: its visitor, and
    what only these routes need (the parsed ``Cookie`` header, the headers, the peer behind proxies),
    worked out on first use."""

    __slots__ = ("_cookies", "_headers", "_peer", "_reader", "_scope", "visitor")

    def __init__(self, reader: VisitReader, scope: Scope, visitor: Visitor) -> None:
        self._reader = reader
        self._scope = scope
        self.visitor = visitor
        self._cookies: Mapping[str, str] | None = None

    @property
    def verified(self) -> VerifiedDecision | None:
        return self.visitor.verified

    @property
    def state(self) -> ConsentState:
        return self.visitor.state

    @property
    def new_language(self) -> str | None:
        return self.visitor.new_language

    @property
    def headers(self) -> Headers:
        try:
            return self._headers
        except AttributeError:
            self._headers: Headers = Headers(scope=self._scope)
            return self._headers

    @property
    def cookies(self) -> Mapping[str, str]:
        if self._cookies is None:
            self._cookies = self._reader.cookies_of(self.visitor.cookie_header)
        return self._cookies

    @property
    def peer(self) -> Peer:
        try:
            return self._peer
        except AttributeError:
            self._peer: Peer = resolve_peer(self._scope, self.headers, self._reader.trusted_proxies)
            return self._peer


def query_value(scope: Scope, name: str) -> str | None:
    query: bytes = scope.get("query_string", b"")
    if not query or len(query) > MAX_QUERY_BYTES:
        return None
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key == name:
            return value
    return None


def geo_locator(option: str | Path | BundledDatabase | None) -> GeoLocator:
    """The ``geoip_database`` option opened: the bundled database, a file, or geolocation off."""
    if option is None:
        return GeoLocator(None)
    if isinstance(option, BundledDatabase):
        path = bundled_database()
        if path is None:
            logger.warning(
                "consent-middleware: geolocation is off, the bundled database is missing "
                "(install python-geoacumen with --no-deps, or set geoip_database)"
            )
        return GeoLocator(path)
    return GeoLocator(Path(option))


class VisitReader:
    def __init__(self, *, config: ConsentConfig, codec: DecisionCodec, rules: CookieRules) -> None:
        self._config = config
        self._codec = codec
        self._rules = rules
        self._categories = tuple(category.name for category in config.categories)
        self.device_category = config.device_category
        self._languages = config.languages
        self._policy_version = config.policy_version
        self._respect_gpc = config.respect_gpc
        self.trusted_proxies = config.trusted_proxies
        self.geo = geo_locator(config.geoip_database)
        # Cookie header -> its cookies: a visitor sends the same header request after request.
        self._parsed_cookies: dict[str, Mapping[str, str]] = {}
        # Identifying headers -> what they say (see Visitor).
        self._known: dict[tuple[object, ...], Visitor] = {}

    def cookies_of(self, header: str | None) -> Mapping[str, str]:
        """The cookies of a ``Cookie`` header (read-only: the mapping is shared between requests)."""
        if not header:
            return _NO_COOKIES
        cookies = self._parsed_cookies.get(header)
        if cookies is None:
            cookies = MappingProxyType(cookie_parser(header))
            if len(header) <= MAX_CACHED_COOKIE_HEADER:
                if len(self._parsed_cookies) >= MAX_CACHED_COOKIE_HEADERS:
                    self._parsed_cookies.pop(next(iter(self._parsed_cookies), ""), None)
                self._parsed_cookies[header] = cookies
        return cookies

    def read(self, scope: Scope) -> tuple[Visitor, dict[bytes, bytes]]:
        """The request's visitor (shared with earlier requests that sent the same identifying headers,
        or its own when it chooses a language with ``?lang=``), and its header fields (several
        ``Cookie`` headers joined into one field)."""
        # First of each name wins, as with Headers.get (names are lower case in ASGI); the headers are
        # a list or a tuple (the middleware makes them one).
        headers = scope["headers"]
        fields = dict(reversed(headers))
        if len(fields) != len(headers) and b"cookie" in fields:
            # HTTP/2 may send each cookie in a Cookie header of its own: read as one header, joined
            # as RFC 9113 (8.2.3) joins them, so a decision in the second one counts too.
            fields[b"cookie"] = b"; ".join([value for name, value in headers if name == b"cookie"])
        query: bytes = scope.get("query_string", b"")
        # find, not "in": bytes.__contains__ first tries its argument as an int and formats an error.
        if query and query.find(b"lang=") != -1:
            query_language = valid_language(query_value(scope, "lang"), self._languages)
            return self._work_out(scope, fields, query_language), fields
        client = scope.get("client")
        key: tuple[object, ...] = (
            fields.get(b"cookie"),
            fields.get(b"user-agent"),
            fields.get(b"accept-language"),
            fields.get(b"sec-gpc"),
            client[0] if client else None,
        )
        if self.trusted_proxies:  # the address and the scheme come from what resolve_peer reads
            key += (
                scope.get("scheme"),
                fields.get(b"forwarded"),
                fields.get(b"x-forwarded-for"),
                fields.get(b"x-forwarded-proto"),
            )
        known = self._known.get(key)
        if known is None or (known.verified and not known.valid_from <= time.time() < known.valid_until):
            known = self._work_out(scope, fields, None)
            if known.shareable and _bytes_in(key) <= MAX_KNOWN_VISITOR_BYTES:
                if len(self._known) >= MAX_KNOWN_VISITORS:
                    self._known.pop(next(iter(self._known), key), None)
                self._known[key] = known
        return known, fields

    def visit(self, scope: Scope, visitor: Visitor) -> Visit:
        """The full view of a request to the middleware's own routes."""
        return Visit(self, scope, visitor)

    def _work_out(self, scope: Scope, fields: dict[bytes, bytes], query_language: str | None) -> Visitor:
        """The request's visitor worked out from its headers and its valid ``?lang=`` choice, if any
        (then the visitor is this request's alone)."""
        secure = None
        if self.trusted_proxies:
            peer = resolve_peer(scope, Headers(scope=scope), self.trusted_proxies)
            client_ip, secure = peer.client_ip, peer.https
        else:
            client = scope.get("client")
            client_ip = normal_ip(client[0]) if client else None
        visitor = self.visitor(fields, client_ip, query_language)
        visitor.secure = secure
        if query_language:
            remembered = self.cookies_of(visitor.cookie_header).get(LANGUAGE_COOKIE)
            if query_language != valid_language(remembered, self._languages):
                visitor.new_language = query_language
                visitor.has_pending_cookies = True
        return visitor

    def visitor(
        self, fields: Mapping[bytes, bytes], client_ip: str | None, query_language: str | None
    ) -> Visitor:
        """What the identifying headers say: the verified decision, the address, the consent state."""
        cookie_bytes = fields.get(b"cookie")
        cookie_header = cookie_bytes.decode("latin-1") if cookie_bytes else None
        verified = None
        valid_from, valid_until = -math.inf, math.inf
        shareable = query_language is None
        if cookie_header and CONSENT_COOKIE in cookie_header:
            value = self.cookies_of(cookie_header).get(CONSENT_COOKIE)
            verified = self._codec.decode(value)
            if verified is None:
                # Not kept: a cookie not yet valid (clock skew) becomes valid later.
                shareable = shareable and not value
            else:
                valid_from, valid_until = self._codec.window(verified.decision)
        decision = verified.decision if verified else None
        state = ConsentState(
            decision,
            self._categories,
            self._codec.expires_at(decision) if decision else None,
            self._policy_version,
            # language: resolved on first read, from values only (no reference to a request's objects)
            functools.partial(
                self.language_for,
                fields.get(b"accept-language", b""),
                cookie_header,
                query_language,
                client_ip,
            ),
            self._respect_gpc and fields.get(b"sec-gpc", b"").strip() == b"1",  # gpc
            client_ip,  # security_client_ip
        )
        granted = decision.categories if decision else _NOTHING
        device_granted = self.device_category in granted
        if device_granted:
            state.reveal_device(self, fields.get(b"user-agent", b""), client_ip)
        # Any Cookie header, even an empty first one: a later one may hold refused cookies.
        refuses_cookies = cookie_bytes is not None and self._rules.may_refuse(granted)
        return Visitor(
            cookie_header,
            verified,
            client_ip,
            granted,
            device_granted,
            state,
            valid_from,
            valid_until,
            shareable,
            fields.get(b"user-agent", b""),
            refuses_cookies,
            self._rules.filter_cookie_header(cookie_bytes, granted)
            if cookie_bytes and refuses_cookies
            else None,
        )

    def language_for(
        self,
        accept_language: bytes,
        cookie_header: str | None,
        query_language: str | None,
        client_ip: str | None,
    ) -> str:
        """SPEC §4, on first use: the explicit choice, the country (transient), the browser."""
        config = self._config
        remembered = self.cookies_of(cookie_header).get(LANGUAGE_COOKIE)
        explicit = query_language or valid_language(remembered, config.languages)
        return resolve_language(
            explicit=explicit,
            accept_language=accept_language.decode("latin-1"),
            supported=config.languages,
            default=config.default_language,
            country=None if explicit else self.geo.country(client_ip),
            prefer_browser=config.prefer_browser_language,
        )

    def parsed_device(self, user_agent: bytes) -> Device:
        """The user agent parsed (``ConsentState.device``, once the device category is granted)."""
        return device_of(user_agent.decode("latin-1"))

    def country(self, ip: str | None) -> str | None:
        """The country of the client address (``ConsentState.country``, once granted)."""
        return self.geo.country(ip)


def _bytes_in(key: tuple[object, ...]) -> int:
    """The header bytes a visitor's key holds."""
    return sum(len(part) for part in key if isinstance(part, bytes))


_NO_COOKIES: Final[Mapping[str, str]] = MappingProxyType({})
_NOTHING: Final[frozenset[str]] = frozenset()
