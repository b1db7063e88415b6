"""One request as the middleware sees it: peer, cookies, verified decision, language, state."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import Scope

from .config import ConsentConfig
from .language import resolve_language, valid_language
from .proxy import Peer, resolve_peer
from .registry import CONSENT_COOKIE, LANGUAGE_COOKIE
from .state import ConsentState, DecisionCodec, VerifiedDecision

__all__ = ["Visit", "VisitReader"]

#: A query string longer than this is not searched for ``lang``.
MAX_QUERY_BYTES = 4096


@dataclass(slots=True)
class Visit:
    headers: Headers
    peer: Peer
    cookies: dict[str, str]
    verified: VerifiedDecision | None
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


class VisitReader:
    def __init__(self, *, config: ConsentConfig, codec: DecisionCodec) -> None:
        self._config = config
        self._codec = codec
        self._categories = tuple(category.name for category in config.categories)

    def read(self, scope: Scope) -> Visit:
        config = self._config
        headers = Headers(scope=scope)
        peer = resolve_peer(scope, headers, config.trusted_proxies)
        cookie_header = headers.get("cookie")
        cookies = cookie_parser(cookie_header) if cookie_header else {}
        verified = self._codec.decode(cookies.get(CONSENT_COOKIE))
        decision = verified.decision if verified else None
        gpc = config.respect_gpc and headers.get("sec-gpc", "").strip() == "1"

        from_query = valid_language(query_value(scope, "lang"), config.languages)
        remembered = valid_language(cookies.get(LANGUAGE_COOKIE), config.languages)
        language = resolve_language(
            explicit=from_query or remembered,
            accept_language=headers.get("accept-language", ""),
            supported=config.languages,
            default=config.default_language,
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
        new_language = from_query if from_query and from_query != remembered else None
        return Visit(headers, peer, cookies, verified, new_language, state)
