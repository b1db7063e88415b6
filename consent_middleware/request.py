"""One request as the middleware sees it: peer, cookies, verified decision, language, state."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import Scope

from .config import BundledDatabase, ConsentConfig
from .geo import GeoLocator, bundled_database
from .language import resolve_language, valid_language
from .privacy import device_of, is_bot
from .proxy import Peer, resolve_peer
from .registry import CONSENT_COOKIE, LANGUAGE_COOKIE
from .state import ConsentState, DecisionCodec, VerifiedDecision

__all__ = ["Visit", "VisitReader"]

logger = logging.getLogger("consent_middleware")

#: A query string longer than this is not searched for ``lang``.
MAX_QUERY_BYTES = 4096


@dataclass(slots=True, kw_only=True)
class Visit:
    headers: Headers
    peer: Peer
    cookies: dict[str, str]
    verified: VerifiedDecision | None
    #: The optional categories granted (empty until the visitor decides; ``necessary`` is implied).
    granted: frozenset[str]
    #: May the app see the full IP, the user agent and the country?
    device_granted: bool
    #: A crawler (undecided visitors only): it gets no banner.
    bot: bool
    #: A valid ``?lang=`` that differs from the language cookie: the response remembers it.
    new_language: str | None
    state: ConsentState


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
        self.geo = geo_locator(config.geoip_database)

    def read(self, scope: Scope) -> Visit:
        config = self._config
        headers = Headers(scope=scope)
        peer = resolve_peer(scope, headers, config.trusted_proxies)
        cookie_header = headers.get("cookie")
        cookies = cookie_parser(cookie_header) if cookie_header else {}
        verified = self._codec.decode(cookies.get(CONSENT_COOKIE))
        decision = verified.decision if verified else None
        gpc = config.respect_gpc and headers.get("sec-gpc", "").strip() == "1"

        granted = decision.categories if decision else frozenset()
        device_granted = config.device_category in granted

        from_query = valid_language(query_value(scope, "lang"), config.languages)
        remembered = valid_language(cookies.get(LANGUAGE_COOKIE), config.languages)
        explicit = from_query or remembered
        # The country serves the language (transient) and, after consent, the app.
        country = self.geo.country(peer.client_ip) if not explicit or device_granted else None
        language = resolve_language(
            explicit=explicit,
            accept_language=headers.get("accept-language", ""),
            supported=config.languages,
            default=config.default_language,
            country=country,
            prefer_browser=config.prefer_browser_language,
        )
        state = ConsentState(
            decision=decision,
            all_categories=self._categories,
            expires_at=self._codec.expires_at(decision) if decision else None,
            version=config.policy_version,
            language=language,
            gpc=gpc,
            security_client_ip=peer.client_ip,
        )
        user_agent = headers.get("user-agent", "")
        if device_granted:
            state.device = device_of(user_agent)
            state.client_ip = peer.client_ip
            state.country = country
        new_language = from_query if from_query and from_query != remembered else None
        return Visit(
            headers=headers,
            peer=peer,
            cookies=cookies,
            verified=verified,
            granted=granted,
            device_granted=device_granted,
            bot=not decision and is_bot(user_agent),
            new_language=new_language,
            state=state,
        )
