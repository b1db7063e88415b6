"""One request as the middleware sees it: peer, cookies, verified decision, language, state."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import Scope

from .config import BundledDatabase, ConsentConfig
from .geo import GeoLocator, bundled_database
from .language import resolve_language, valid_language
from .privacy import Device, device_of, is_bot
from .proxy import Peer, normal_ip, resolve_peer
from .registry import CONSENT_COOKIE, LANGUAGE_COOKIE
from .state import ConsentState, DecisionCodec, VerifiedDecision

__all__ = ["Visit", "VisitReader"]

logger = logging.getLogger("consent_middleware")

#: A query string longer than this is not searched for ``lang``.
MAX_QUERY_BYTES: Final = 4096
#: Parsed ``Cookie`` headers kept (only headers up to MAX_CACHED_COOKIE_HEADER characters).
MAX_CACHED_COOKIE_HEADERS: Final = 1024
MAX_CACHED_COOKIE_HEADER: Final = 4096


class Visit:
    """One request as read by :class:`VisitReader`. What only some responses need (the parsed
    ``Cookie`` header, the peer behind proxies, the language, bot detection) is worked out on first
    use: a JSON route pays for none of it."""

    __slots__ = (
        "_cookies",
        "_headers",
        "_peer",
        "_reader",
        "_scope",
        "client_ip",
        "cookie_header",
        "device_granted",
        "fields",
        "granted",
        "has_pending_cookies",
        "new_language",
        "query_language",
        "state",
        "verified",
    )

    def __init__(
        self,
        reader: VisitReader,
        scope: Scope,
        fields: Mapping[bytes, bytes],
        cookie_header: str | None,
        verified: VerifiedDecision | None,
        client_ip: str | None,
    ) -> None:
        # Positional, and the lazy slots left unset (read through AttributeError): one per request.
        self._reader = reader
        self._scope = scope
        #: The request headers, first of each name (as ``Headers.get`` reads them).
        self.fields = fields
        self.cookie_header = cookie_header
        self.verified = verified
        #: The client's address (behind trusted proxies, the visitor's); None when unknown.
        self.client_ip = client_ip
        #: The optional categories granted (empty until the visitor decides; ``necessary`` is implied).
        self.granted: frozenset[str] = verified.decision.categories if verified else _NOTHING
        #: May the app see the full IP, the user agent and the country?
        self.device_granted = reader.device_category in self.granted
        #: A valid ``?lang=`` that differs from the language cookie: the response remembers it.
        self.new_language: str | None = None
        #: Whether any response to this request sets a cookie (a language choice, a re-signed decision).
        self.has_pending_cookies = verified is not None and verified.needs_rotation
        self._cookies: Mapping[str, str] | None = None  # parsed on first use (pages read them)
        #: A valid ``?lang=`` (the visitor's explicit choice on this request).
        self.query_language: str | None = None
        self.state: ConsentState  # set by VisitReader.read

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
            self._cookies = self._reader.cookies_of(self.cookie_header)
        return self._cookies

    @property
    def peer(self) -> Peer:
        try:
            return self._peer
        except AttributeError:
            self._peer: Peer = resolve_peer(self._scope, self.headers, self._reader.trusted_proxies)
            return self._peer

    @property
    def https(self) -> bool:
        """Whether the visitor's connection is HTTPS (for the ``Secure`` cookie flag)."""
        if not self._reader.trusted_proxies:
            return self._scope.get("scheme") in ("https", "wss")
        return self.peer.https

    @property
    def bot(self) -> bool:
        """A crawler (undecided visitors only): it gets no banner."""
        if self.verified:
            return False
        return is_bot(self.fields.get(b"user-agent", b"").decode("latin-1"))  # cached per user agent


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
    def __init__(self, *, config: ConsentConfig, codec: DecisionCodec) -> None:
        self._config = config
        self._codec = codec
        self._categories = tuple(category.name for category in config.categories)
        self.device_category = config.device_category
        self._languages = config.languages
        self._policy_version = config.policy_version
        self._max_age = codec.max_age
        self._respect_gpc = config.respect_gpc
        self.trusted_proxies = config.trusted_proxies
        self.geo = geo_locator(config.geoip_database)
        # Cookie header -> its cookies: a visitor sends the same header request after request.
        self._parsed_cookies: dict[str, Mapping[str, str]] = {}

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

    def read(self, scope: Scope) -> Visit:
        raw_headers = scope["headers"]
        if not isinstance(raw_headers, (list, tuple)):  # a tuple: "list | tuple" builds a union per call
            raw_headers = list(raw_headers)
        # First of each name wins, as with Headers.get (names are lower case in ASGI).
        fields = dict(reversed(raw_headers))
        cookie_bytes = fields.get(b"cookie")
        cookie_header = cookie_bytes.decode("latin-1") if cookie_bytes else None
        verified = None
        if cookie_header and CONSENT_COOKIE in cookie_header:
            verified = self._codec.decode(self.cookies_of(cookie_header).get(CONSENT_COOKIE))
        if self.trusted_proxies:
            client_ip = resolve_peer(scope, Headers(scope=scope), self.trusted_proxies).client_ip
        else:
            client = scope.get("client")
            client_ip = normal_ip(client[0]) if client else None
        visit = Visit(self, scope, fields, cookie_header, verified, client_ip)
        if b"lang=" in scope.get("query_string", b""):
            from_query = visit.query_language = valid_language(query_value(scope, "lang"), self._languages)
            if from_query:
                remembered = valid_language(visit.cookies.get(LANGUAGE_COOKIE), self._languages)
                if from_query != remembered:
                    visit.new_language = from_query
                    visit.has_pending_cookies = True
        decision = verified.decision if verified else None
        state = visit.state = ConsentState(
            decision,
            self._categories,
            decision.decided_at + self._max_age if decision else None,
            self._policy_version,
            # language: resolved on first read, from values only (no reference back to the visit: a
            # cycle would keep each request's objects alive until the garbage collector runs)
            functools.partial(self.language_for, fields, cookie_header, visit.query_language, client_ip),
            self._respect_gpc and fields.get(b"sec-gpc", b"").strip() == b"1",  # gpc
            client_ip,  # security_client_ip
        )
        if visit.device_granted:
            state.reveal_device(self, fields.get(b"user-agent", b""), client_ip)
        return visit

    def language_for(
        self,
        fields: Mapping[bytes, bytes],
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
            accept_language=fields.get(b"accept-language", b"").decode("latin-1"),
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


_NO_COOKIES: Final[Mapping[str, str]] = MappingProxyType({})
_NOTHING: Final[frozenset[str]] = frozenset()
