"""Cookie rules while a category is refused (SPEC §3): the app's ``Set-Cookie``, the incoming
``Cookie`` header, and expiring what a narrowed decision no longer allows.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Final

from .registry import NECESSARY, Registry

__all__ = ["CookieRules", "cookie_name"]

#: Names seen per process; beyond this the lookup simply is not cached.
MAX_CACHED_NAMES: Final = 4096
#: Filtered ``Cookie`` headers kept (a visitor sends the same header on every request).
MAX_CACHED_HEADERS: Final = 1024
MAX_CACHED_HEADER: Final = 4096
#: A request carrying more refused cookies than this gets only the first ones expired.
MAX_EXPIRED_COOKIES: Final = 32
#: RFC 6265 token: a name from the request that is anything else is never echoed into a header.
COOKIE_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")
EXPIRED: Final = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/"

Header = tuple[bytes, bytes]


def cookie_name(set_cookie: bytes) -> str:
    """The name a ``Set-Cookie`` value sets (RFC 6265 §5.2: up to the first ``=``, trimmed). Trimmed
    as ``str.strip`` does, as the apps' own parsers (Starlette's, Django's) read it: a name with a
    leading NBSP is still that name to them."""
    pair = set_cookie.split(b";", 1)[0]
    return pair.split(b"=", 1)[0].decode("latin-1").strip() if b"=" in pair else ""


def parent_domains(host: str) -> list[str]:
    """``host`` and its parent domains down to two labels; nothing for an IP or a one-label name."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.strip("[]").rstrip(".").lower()
    try:
        ipaddress.ip_address(name)
        return []
    except ValueError:
        pass
    labels = name.split(".")
    return [".".join(labels[index:]) for index in range(len(labels) - 1)]


class CookieRules:
    """Which cookie names a visitor's decision allows; one instance per middleware."""

    def __init__(self, *, registry: Registry, block_unknown: bool) -> None:
        self._registry = registry
        self._block_unknown = block_unknown
        self._categories: dict[str, str | None] = {}
        # The optional categories that declare cookies: a visitor granting all of them refuses none.
        self._cookie_categories = frozenset(
            service.category for service in registry.services if service.cookies
        ) - {NECESSARY}
        # (Cookie header, granted) -> the header without refused cookies (None: unchanged).
        self._filtered: dict[tuple[bytes, frozenset[str]], bytes | None] = {}

    def may_refuse(self, granted: frozenset[str]) -> bool:
        """Whether a request cookie can be refused under ``granted`` (any declared category missing)."""
        return not self._cookie_categories <= granted

    def category(self, name: str) -> str | None:
        try:
            return self._categories[name]
        except KeyError:
            category = self._registry.cookie_category(name)
            if len(self._categories) < MAX_CACHED_NAMES:
                self._categories[name] = category
            return category

    def allowed_to_set(self, name: str, granted: frozenset[str]) -> bool:
        """May the app set this cookie? Unknown names pass unless ``block_unknown_cookies``."""
        category = self.category(name)
        if category is None:
            return not self._block_unknown
        return category == NECESSARY or category in granted

    def refused(self, name: str, granted: frozenset[str]) -> bool:
        """Is this a declared cookie of a category the visitor has not granted?"""
        category = self.category(name)
        return category is not None and category != NECESSARY and category not in granted

    def filter_set_cookies(self, headers: Sequence[Header], granted: frozenset[str]) -> list[Header] | None:
        """The response headers without refused ``Set-Cookie``s, or ``None`` when nothing is dropped."""
        kept: list[Header] | None = None
        for index, (name, value) in enumerate(headers):
            if name.lower() == b"set-cookie" and not self.allowed_to_set(cookie_name(value), granted):
                if kept is None:
                    kept = list(headers[:index])
            elif kept is not None:
                kept.append((name, value))
        return kept

    def filter_cookie_header(self, header: bytes, granted: frozenset[str]) -> bytes | None:
        """The ``Cookie`` header without refused cookies, or ``None`` when nothing is dropped."""
        key = (header, granted)
        try:
            return self._filtered[key]
        except KeyError:
            pass
        filtered = self._filter_cookie_header(header, granted)
        if len(header) <= MAX_CACHED_HEADER:
            if len(self._filtered) >= MAX_CACHED_HEADERS:
                self._filtered.pop(next(iter(self._filtered), key), None)
            self._filtered[key] = filtered
        return filtered

    def _filter_cookie_header(self, header: bytes, granted: frozenset[str]) -> bytes | None:
        pairs = header.split(b";")
        # A piece without "=" names no cookie: kept without a lookup (a header of 100,000 ";" is cheap).
        kept = [pair for pair in pairs if b"=" not in pair or not self.refused(cookie_name(pair), granted)]
        if len(kept) == len(pairs):
            return None
        return b";".join(kept).strip()

    def with_cookie(
        self, headers: Sequence[Header], granted: frozenset[str], cookie: bytes, app_cookie: bytes
    ) -> list[Header]:
        """``headers``, whose one ``Cookie`` header is ``cookie``, with ``app_cookie`` (its value under
        ``granted``) instead, none if empty: a copy and an index at C speed, where
        :meth:`without_refused` loops in Python."""
        replaced = list(headers)
        try:
            index = replaced.index((b"cookie", cookie))
        except ValueError:  # pairs that are lists, not tuples (ASGI allows any iterable)
            return self.without_refused(headers, granted)
        if app_cookie:
            replaced[index] = (b"cookie", app_cookie)
        else:
            del replaced[index]
        return replaced

    def without_refused(self, headers: Sequence[Header], granted: frozenset[str]) -> list[Header]:
        """Request headers whose ``Cookie`` lost the refused cookies: the app never sees them."""
        filtered = []
        for name, value in headers:
            if name == b"cookie":
                kept = self.filter_cookie_header(value, granted)
                if kept == b"":
                    continue
                value = value if kept is None else kept
            filtered.append((name, value))
        return filtered

    def expiring(
        self, names: Iterable[str], granted: frozenset[str], *, host: str, secure: bool
    ) -> list[str]:
        """``Set-Cookie`` values that delete the refused cookies among ``names``, on the host and
        each parent domain (analytics scripts set theirs on the registrable domain)."""
        refused = [name for name in names if COOKIE_TOKEN.fullmatch(name) and self.refused(name, granted)]
        refused = refused[:MAX_EXPIRED_COOKIES]
        suffix = "; Secure" if secure else ""
        headers = []
        for name in refused:
            headers.append(f"{name}=; {EXPIRED}{suffix}")
            headers.extend(f"{name}=; {EXPIRED}; Domain={domain}{suffix}" for domain in parent_domains(host))
        return headers
