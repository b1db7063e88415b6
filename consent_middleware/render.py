"""The consent UI as HTML (SPEC §3, §6): the banner, the settings control, the placeholder of a
gated iframe, and the standalone preferences and cookie-declaration pages.

The banner or the settings control goes into every HTML response, so rendering is cheap: each piece
is rendered by Jinja2 once per (language, ...) with placeholders where the per-request values go
(``next_path``, ``nonce``); a call then only splices the escaped values into the cached parts. The
output depends on the arguments alone (no random ids): the same arguments give the same string.

Texts come, most specific first, from the operator (``texts[lang][key]``), the language's locale
file, then English (operator override, then file). Category, service and cookie texts declared in
the registry come before the locale files' ``category.NAME.label``-style keys.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Literal
from urllib.parse import quote

from babel import Locale, UnknownLocaleError
from babel.dates import format_timedelta
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from . import locales
from .registry import Cookie, Registry, Service, Text

__all__ = ["Renderer"]

_NO_TEXTS: Mapping[str, Mapping[str, str]] = MappingProxyType({})

# Per-request values are rendered as these placeholders, then spliced in. A NUL never reaches the
# output otherwise: _finalize replaces it in every other value, and the templates hold none.
_SLOT = re.compile("\x00([A-Z])\x00")
_NEXT = Markup("\x00N\x00")  # next_path, HTML-escaped (hidden input)
_NEXT_QUERY = Markup("\x00Q\x00")  # next_path, URL-encoded then HTML-escaped (?next=...)
_BACK = Markup("\x00B\x00")  # next_path as a same-site href, else "/"
_NONCE = Markup("\x00C\x00")  # ' nonce="..."' or ""

#: Rendered markup split on the placeholders: literal text at even indexes, slot letters at odd ones.
_Parts = tuple[str, ...]

_CACHE_SIZE = 256
#: The texts a visitor reads in the banner before choosing; their hash goes into the consent log.
BANNER_TEXT_KEYS = (
    "banner.title",
    "banner.text",
    "banner.gpc",
    "banner.accept_all",
    "banner.reject_all",
    "banner.choose",
)
_PREFERENCES_CACHE_SIZE = 1024

_Unit = Literal["year", "month", "week", "day", "hour", "minute", "second"]
_DAY = 24 * 3600
_UNITS: tuple[tuple[_Unit, int], ...] = (
    ("year", 365 * _DAY),
    ("month", 30 * _DAY),
    ("week", 7 * _DAY),
    ("day", _DAY),
    ("hour", 3600),
    ("minute", 60),
    ("second", 1),
)
# A path that is safe as an href: starts with one "/", no backslash, control character or space
# (browsers drop tabs and newlines from URLs, which could turn "/\t/evil.example" into "//evil...").
_UNSAFE_PATH = re.compile(r"[\x00-\x20\x7f\\]")


def _finalize(value: object) -> object:
    """Every ``{{ value }}``: a NUL in a text becomes U+FFFD, so only placeholders carry NULs."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return value.replace("\x00", "\ufffd")
    return value


@functools.cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("consent_middleware", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )


def _render(template: str, context: Mapping[str, object]) -> _Parts:
    return tuple(_SLOT.split(_environment().get_template(template).render(context)))


def _fill(parts: _Parts, values: Mapping[str, str]) -> str:
    if len(parts) == 1:
        return parts[0]
    filled = list(parts)
    filled[1::2] = [values[slot] for slot in parts[1::2]]
    return "".join(filled)


def _slot_values(nonce: str | None, next_path: str = "/") -> dict[str, str]:
    # Lone surrogates (undecodable bytes) become "?", NULs U+FFFD: the output always encodes.
    path = next_path.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    back = "/" if not path.startswith("/") or path.startswith("//") or _UNSAFE_PATH.search(path) else path
    return {
        "C": f' nonce="{escape(nonce)}"' if nonce else "",
        "N": str(escape(path)),
        "Q": str(escape(quote(path, safe="/"))),
        "B": str(escape(back)),
    }


def _duration_unit(seconds: int) -> _Unit:
    """The largest unit that states ``seconds`` within 5% ("13 months" for 395 days, not "1 year")."""
    for unit, size in _UNITS:
        value = seconds / size
        if value >= 1 and abs(round(value) - value) <= 0.05 * value:
            return unit
    return "second"


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _babel_locale(language: str) -> Locale:
    try:
        return Locale.parse(language, sep="-")
    except (ValueError, TypeError, UnknownLocaleError):
        return Locale.parse(locales.FALLBACK_LANGUAGE)


@dataclass(frozen=True, slots=True)
class _CookieView:
    name: str
    provider: str
    purpose: str
    duration: str


@dataclass(frozen=True, slots=True)
class _ServiceView:
    name: str
    label: str
    purpose: str
    provider: str
    privacy_policy: str
    cookies: tuple[_CookieView, ...]


@dataclass(frozen=True, slots=True)
class _CategoryView:
    name: str
    label: str
    description: str
    required: bool
    services: tuple[_ServiceView, ...]


class Renderer:
    """Renders the consent UI of one middleware configuration. Thread-safe; every cache is bounded.

    A ``language`` argument outside ``languages`` renders in ``default_language``.
    """

    def __init__(
        self,
        *,
        registry: Registry,
        languages: Sequence[str],
        default_language: str,
        prefix: str,
        static_urls: Mapping[str, str],
        texts: Mapping[str, Mapping[str, str]] = _NO_TEXTS,
        settings_button: bool = True,
    ) -> None:
        codes = tuple(dict.fromkeys(languages))
        if not codes:
            raise ValueError("languages must name at least one language")
        if default_language not in codes:
            raise ValueError(f"default_language {default_language!r} is not one of languages {list(codes)}")
        missing = [name for name in ("banner.css", "banner.js") if not static_urls.get(name)]
        if missing:
            raise ValueError(f"static_urls has no URL for {', '.join(missing)}")
        operator: dict[str, dict[str, str]] = {}
        for language, table in texts.items():
            if not isinstance(table, Mapping) or not all(
                isinstance(key, str) and isinstance(value, str) for key, value in table.items()
            ):
                raise ValueError(f"texts[{language!r}] must map text keys to strings")
            operator[language] = dict(table)
        self._registry = registry
        self._languages = codes
        self._default_language = default_language
        self._prefix = "/" + prefix.strip("/")
        self._css = static_urls["banner.css"]
        self._js = static_urls["banner.js"]
        self._settings_button = settings_button
        self._operator = operator
        self._fallback: Mapping[str, str] = {
            **locales.file_texts(locales.FALLBACK_LANGUAGE),
            **operator.get(locales.FALLBACK_LANGUAGE, {}),
        }
        self._switcher: tuple[tuple[str, str], ...] = tuple(
            (code, operator.get(code, {}).get("language.name") or locales.language_name(code))
            for code in codes
        )
        self._specific = functools.lru_cache(maxsize=_CACHE_SIZE)(self._specific_texts)
        self._views = functools.lru_cache(maxsize=_CACHE_SIZE)(self._category_views)
        self._banner = functools.lru_cache(maxsize=_CACHE_SIZE)(self._render_banner)
        self._settings = functools.lru_cache(maxsize=_CACHE_SIZE)(self._render_settings)
        self._placeholder = functools.lru_cache(maxsize=_CACHE_SIZE)(self._render_placeholder)
        self._preferences = functools.lru_cache(maxsize=_PREFERENCES_CACHE_SIZE)(self._render_preferences)
        self._cookies = functools.lru_cache(maxsize=_CACHE_SIZE)(self._render_cookies)

    # -- texts ---------------------------------------------------------------------------------

    def _specific_texts(self, language: str) -> Mapping[str, str]:
        """The texts written for ``language`` itself (and its base language): no English fill."""
        merged: dict[str, str] = {}
        base, sep, _ = language.partition("-")
        for code in (base, language) if sep else (language,):
            merged.update(locales.file_texts(code))
            merged.update(self._operator.get(code, {}))
        return MappingProxyType(merged)

    def text(self, language: str, key: str) -> str:
        """The text ``key`` in ``language``: operator override, locale file, then English; else the key."""
        specific = self._specific(language)
        if key in specific:
            return specific[key]
        return self._fallback.get(key, key)

    def _pick(self, own: Text, key: str, language: str, default: str) -> str:
        """A registry text in ``language``, else the locale key, else its English, else ``default``."""
        if isinstance(own, str):
            if own:
                return own
        else:
            value = own.get(language) or own.get(language.partition("-")[0])
            if value:
                return value
        value = self._specific(language).get(key)
        if value:
            return value
        if not isinstance(own, str):
            value = own.get(locales.FALLBACK_LANGUAGE)
            if value:
                return value
        return self._fallback.get(key) or default

    def _content_language(self, language: str) -> str:
        """The language the texts are really in: English when nothing is written for ``language``."""
        return language if self._specific(language) else locales.FALLBACK_LANGUAGE

    def _language(self, language: str) -> str:
        return language if language in self._languages else self._default_language

    def _duration(self, max_age: int | None, language: str) -> str:
        if max_age is None:
            return self.text(language, "cookies.session")
        return format_timedelta(
            timedelta(seconds=max_age),
            granularity=_duration_unit(max_age),
            threshold=math.inf,  # state the duration in exactly the unit chosen above
            locale=_babel_locale(self._content_language(language)),
        )

    # -- registry views ------------------------------------------------------------------------

    def _cookie_view(
        self, cookie: Cookie, service: Service, service_purpose: str, language: str
    ) -> _CookieView:
        return _CookieView(
            name=cookie.name,
            provider=cookie.provider or service.provider or self.text(language, "cookies.this_site"),
            purpose=self._pick(cookie.purpose, f"cookie.{cookie.name}.purpose", language, service_purpose),
            duration=self._duration(cookie.max_age, language),
        )

    def _service_view(self, service: Service, language: str) -> _ServiceView:
        purpose = self._pick(service.purpose, f"service.{service.name}.purpose", language, "")
        return _ServiceView(
            name=service.name,
            label=self._pick(service.label, f"service.{service.name}.label", language, service.name),
            purpose=purpose,
            provider=service.provider or self.text(language, "cookies.this_site"),
            privacy_policy=service.privacy_policy,
            cookies=tuple(
                self._cookie_view(cookie, service, purpose, language) for cookie in service.cookies
            ),
        )

    def _category_label(self, name: str, language: str) -> str:
        category = self._registry.category(name)
        return self._pick(category.label if category else "", f"category.{name}.label", language, name)

    def _category_views(self, language: str) -> tuple[_CategoryView, ...]:
        return tuple(
            _CategoryView(
                name=category.name,
                label=self._category_label(category.name, language),
                description=self._pick(
                    category.description, f"category.{category.name}.description", language, ""
                ),
                required=category.required,
                services=tuple(
                    self._service_view(service, language)
                    for service in self._registry.services_in(category.name)
                ),
            )
            for category in self._registry.categories
        )

    # -- cached renders (per-request values are placeholders) ----------------------------------

    def _context(self, language: str) -> dict[str, object]:
        t: Callable[[str], str] = functools.partial(self.text, language)
        return {
            "lang": self._content_language(language),
            "current": language,
            "languages": self._switcher,
            "switch_next": False,
            "t": t,
            "prefix": self._prefix,
            "css": self._css,
            "js": self._js,
            "nonce": _NONCE,
            "next": _NEXT,
            "next_q": _NEXT_QUERY,
            "back": _BACK,
        }

    def _render_banner(self, language: str, gpc: bool, reload: bool) -> _Parts:
        settings_label = self.text(language, "settings.label") if self._settings_button else ""
        context = {**self._context(language), "gpc": gpc, "settings_label": settings_label, "reload": reload}
        return _render("banner.html", context)

    def _render_settings(self, language: str, reload: bool) -> _Parts:
        return _render("settings.html", {**self._context(language), "reload": reload})

    def _render_placeholder(
        self, language: str, category: str, granted: tuple[str, ...], reload: bool
    ) -> _Parts:
        label = self._category_label(category, language)
        context = {
            **self._context(language),
            "category": category,
            "granted": granted,
            "reload": reload,
            # str.replace, not str.format: an operator's text may hold other braces.
            "text": self.text(language, "placeholder.text").replace("{category}", label),
            "allow": self.text(language, "placeholder.allow").replace("{category}", label),
        }
        return _render("placeholder.html", context)

    def _render_preferences(self, language: str, gpc: bool, granted: tuple[str, ...]) -> _Parts:
        context = {
            **self._context(language),
            "gpc": gpc,
            "granted": granted,
            "categories": self._views(language),
        }
        return _render("preferences.html", context)

    def _render_cookies(self, language: str, credit: str | None) -> _Parts:
        context = {**self._context(language), "categories": self._views(language), "credit": credit}
        return _render("cookies.html", context)

    # -- public --------------------------------------------------------------------------------

    def banner(
        self, *, language: str, next_path: str, nonce: str | None, gpc: bool, reload: bool = False
    ) -> str:
        """The markup injected after ``<body>`` while the visitor has not decided (SPEC §3).

        ``reload`` (CSP mode) marks it ``data-consent-reload``: the script then reloads the page
        after a choice instead of reviving the gated elements in place.
        """
        parts = self._banner(self._language(language), bool(gpc), bool(reload))
        return _fill(parts, _slot_values(nonce, next_path))

    def settings_control(
        self, *, language: str, next_path: str, nonce: str | None, reload: bool = False
    ) -> str:
        """The "cookie settings" link injected after a decision; ``""`` with ``settings_button=False``.

        ``reload`` as for :meth:`banner` (a placeholder's choice on this page then reloads it).
        """
        if not self._settings_button:
            return ""
        return _fill(self._settings(self._language(language), bool(reload)), _slot_values(nonce, next_path))

    def placeholder(
        self,
        *,
        language: str,
        category: str,
        granted: frozenset[str],
        next_path: str,
        nonce: str | None,
        reload: bool = False,
    ) -> str:
        """What stands in for an iframe gated by ``category`` (inserted right before it, SPEC §3).

        A localized line ("This content uses “Marketing” cookies, ...") and a form posting a ``custom``
        decision granting ``category`` on top of the optional categories in ``granted``, so it
        works without JavaScript; with the banner script it is posted as JSON and the iframe comes
        alive in place. It also links the stylesheet and the script (both load once per page, and
        are needed when the settings control is turned off). ``reload`` as for :meth:`banner`.
        """
        kept = tuple(
            name for name in self._registry.optional_categories if name in granted and name != category
        )
        parts = self._placeholder(self._language(language), category, kept, bool(reload))
        return _fill(parts, _slot_values(nonce, next_path))

    def preferences_page(
        self, *, language: str, next_path: str, granted: frozenset[str], gpc: bool, nonce: str | None
    ) -> str:
        """The standalone preferences page: a box per optional category, ticked only if in ``granted``."""
        ticked = tuple(name for name in self._registry.optional_categories if name in granted)
        parts = self._preferences(self._language(language), bool(gpc), ticked)
        return _fill(parts, _slot_values(nonce, next_path))

    def banner_hash(self, language: str) -> str:
        """A SHA-256 of the banner texts shown in ``language``: the log's proof of what was read."""
        language = self._language(language)
        shown = "\n".join(self.text(language, key) for key in BANNER_TEXT_KEYS)
        return hashlib.sha256(shown.encode("utf-8")).hexdigest()

    def cookies_page(self, *, language: str, nonce: str | None, credit: str | None = None) -> str:
        """The standalone cookie declaration: categories, services, cookies, provider, purpose, duration.

        ``credit`` names the geolocation database in use and its licence (its licence asks for it)."""
        return _fill(self._cookies(self._language(language), credit), _slot_values(nonce))
