"""The opt-in Content-Security-Policy mode (SPEC §3): the operator's sources plus the hosts of the
granted services only, so the browser itself blocks a tracker that slipped past the rewriter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .registry import Registry

__all__ = ["PAGE_POLICY", "ContentSecurityPolicy"]

#: Directives that receive the granted services' hosts.
SERVICE_DIRECTIVES: Final = ("script-src", "connect-src", "img-src", "frame-src")
#: Directives always sent in this mode (a missing one would fall back to default-src without hosts).
DIRECTIVES: Final = ("default-src", "script-src", "style-src", "connect-src", "img-src", "frame-src")
NONCE_DIRECTIVES: Final = ("script-src", "style-src")
#: The middleware's own pages: nothing but this origin's files, forms posting back here.
PAGE_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'self'"
)


class ContentSecurityPolicy:
    """Builds the header per request: cached per granted set, with the page's nonce added."""

    def __init__(self, *, sources: Mapping[str, tuple[str, ...]], registry: Registry) -> None:
        self._sources = sources
        self._registry = registry
        self._cache: dict[frozenset[str], list[tuple[str, list[str]]]] = {}

    def _directives(self, granted: frozenset[str]) -> list[tuple[str, list[str]]]:
        cached = self._cache.get(granted)
        if cached is not None:
            return cached
        default = list(self._sources.get("default-src", ("'self'",)))
        hosts = [
            source
            for service in self._registry.services
            if service.category in granted
            for host in service.hosts
            for source in (host, f"*.{host}")
        ]
        directives = []
        for name in DIRECTIVES:
            sources = list(self._sources.get(name, default))
            if name in SERVICE_DIRECTIVES:
                sources += hosts
            if name == "connect-src" and "'self'" not in sources:
                sources.append("'self'")  # the banner posts the choice to this origin
            directives.append((name, list(dict.fromkeys(sources))))
        self._cache[granted] = directives  # at most 2**categories entries
        return directives

    def header(self, granted: frozenset[str], nonce: str | None) -> str:
        parts = []
        for name, sources in self._directives(granted):
            if nonce and name in NONCE_DIRECTIVES:
                sources = [*sources, f"'nonce-{nonce}'"]
            parts.append(f"{name} {' '.join(sources)}")
        return "; ".join(parts)
