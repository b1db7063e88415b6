"""Categories, services and the cookies they set: what the visitor consents to (SPEC §1)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "BUILTIN_SERVICES",
    "CONSENT_COOKIE",
    "CONSENT_SERVICE",
    "CONSENT_SERVICE_NAME",
    "DEFAULT_CATEGORIES",
    "GOOGLE_ANALYTICS",
    "LANGUAGE_COOKIE",
    "LANGUAGE_COOKIE_MAX_AGE",
    "NECESSARY",
    "Category",
    "Cookie",
    "Registry",
    "Service",
    "Text",
    "consent_service",
    "localize",
]

#: A text given once for every language, or per language code (``{"en": ..., "nl": ...}``).
Text = str | Mapping[str, str]

NECESSARY = "necessary"
CATEGORY_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_-]{0,31}")
SERVICE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
HOST_PATTERN = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}")
# Cookie names are RFC 6265 tokens; globs may add "*", "?" and "[...]".
COOKIE_PATTERN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z?\[\]]{1,128}")
YEAR = 365 * 24 * 3600


def localize(text: Text, language: str, fallback: str = "") -> str:
    """The text in ``language``; English, then ``fallback``, when it has no such translation."""
    if isinstance(text, str):
        return text or fallback
    return text.get(language) or text.get("en") or fallback


def _check_text(text: Text, what: str) -> Text:
    if isinstance(text, str):
        return text
    if isinstance(text, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in text.items()):
        return dict(text)
    raise ValueError(f"{what} must be a string or a mapping of language code to string")


@dataclass(frozen=True, slots=True)
class Cookie:
    """A cookie a service sets: an exact name or a glob (``_ga_*``), listed on the cookie page."""

    name: str
    provider: str = ""
    purpose: Text = ""
    #: Lifetime in seconds; ``None`` for a session cookie.
    max_age: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not COOKIE_PATTERN.fullmatch(self.name):
            raise ValueError(f"cookie name {self.name!r} is not a valid cookie name or glob")
        if self.max_age is not None and (not isinstance(self.max_age, int) or self.max_age < 0):
            raise ValueError(f"cookie {self.name!r}: max_age must be seconds (>= 0) or None")
        object.__setattr__(self, "purpose", _check_text(self.purpose, f"cookie {self.name!r} purpose"))


@dataclass(frozen=True, slots=True)
class Category:
    """A purpose the visitor grants or refuses as a whole. Empty texts fall back to the locale files."""

    name: str
    label: Text = ""
    description: Text = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not CATEGORY_NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"category name {self.name!r} must be 1-32 lowercase letters, digits, '-' or '_', "
                "starting with a letter"
            )
        object.__setattr__(self, "label", _check_text(self.label, f"category {self.name!r} label"))
        object.__setattr__(
            self, "description", _check_text(self.description, f"category {self.name!r} description")
        )

    @property
    def required(self) -> bool:
        """``necessary`` is always granted and cannot be refused."""
        return self.name == NECESSARY


@dataclass(frozen=True, slots=True)
class Service:
    """A third party (or the site's own feature) in one category: its script hosts and cookies."""

    name: str
    category: str
    hosts: tuple[str, ...] = ()
    cookies: tuple[Cookie, ...] = ()
    label: Text = ""
    purpose: Text = ""
    provider: str = ""
    privacy_policy: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not SERVICE_NAME_PATTERN.fullmatch(self.name):
            raise ValueError(f"service name {self.name!r} must be lowercase letters, digits, '.', '-', '_'")
        if not isinstance(self.category, str) or not CATEGORY_NAME_PATTERN.fullmatch(self.category):
            raise ValueError(f"service {self.name!r}: category {self.category!r} is not a category name")
        hosts = tuple(_normalize_host(host, self.name) for host in _as_tuple(self.hosts, "hosts", self.name))
        cookies = tuple(
            cookie if isinstance(cookie, Cookie) else Cookie(name=str(cookie), provider=self.provider)
            for cookie in _as_tuple(self.cookies, "cookies", self.name)
        )
        if self.privacy_policy and not self.privacy_policy.startswith("https://"):
            raise ValueError(f"service {self.name!r}: privacy_policy must be an https:// URL")
        object.__setattr__(self, "hosts", hosts)
        object.__setattr__(self, "cookies", cookies)
        object.__setattr__(self, "label", _check_text(self.label, f"service {self.name!r} label"))
        object.__setattr__(self, "purpose", _check_text(self.purpose, f"service {self.name!r} purpose"))


def _as_tuple(value: object, what: str, service: str) -> tuple[object, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(f"service {service!r}: {what} must be a list")
    return tuple(value)


def _normalize_host(host: object, service: str) -> str:
    normalized = host.strip().lower().rstrip(".") if isinstance(host, str) else ""
    if not HOST_PATTERN.fullmatch(normalized):
        raise ValueError(f"service {service!r}: host {host!r} is not a domain name like 'example.com'")
    return normalized


DEFAULT_CATEGORIES: tuple[Category, ...] = (
    Category(NECESSARY),
    Category("preferences"),
    Category("analytics"),
    Category("marketing"),
)

GOOGLE_ANALYTICS = Service(
    name="google-analytics",
    category="analytics",
    provider="Google Ireland Limited",
    privacy_policy="https://policies.google.com/privacy",
    hosts=("googletagmanager.com", "google-analytics.com", "analytics.google.com"),
    cookies=(
        Cookie("_ga", provider="Google", max_age=2 * YEAR),
        Cookie("_ga_*", provider="Google", max_age=2 * YEAR),
        Cookie("_gid", provider="Google", max_age=24 * 3600),
        Cookie("_gat", provider="Google", max_age=60),
        Cookie("_gat_*", provider="Google", max_age=60),
        Cookie("__utm*", provider="Google", max_age=2 * YEAR),
    ),
)

#: The middleware's own cookies: always present, ``necessary``, listed on the cookie page, never blocked.
CONSENT_COOKIE = "consent"
LANGUAGE_COOKIE = "consent_lang"
LANGUAGE_COOKIE_MAX_AGE = YEAR
CONSENT_SERVICE_NAME = "consent-middleware"


def consent_service(decision_max_age: int) -> Service:
    """The middleware's own service, declaring its two cookies with their real lifetimes."""
    return Service(
        name=CONSENT_SERVICE_NAME,
        category=NECESSARY,
        cookies=(
            Cookie(CONSENT_COOKIE, max_age=decision_max_age),
            Cookie(LANGUAGE_COOKIE, max_age=LANGUAGE_COOKIE_MAX_AGE),
        ),
    )


#: As declared with the default ``consent_max_age`` of 182 days.
CONSENT_SERVICE = consent_service(182 * 24 * 3600)

#: Built-in services an operator can name by string in ``services=[...]``.
BUILTIN_SERVICES: Mapping[str, Service] = {GOOGLE_ANALYTICS.name: GOOGLE_ANALYTICS}


@dataclass(frozen=True)
class Registry:
    """The validated categories and services, with fast host and cookie-name lookups."""

    categories: tuple[Category, ...]
    services: tuple[Service, ...]
    _by_host: dict[str, Service] = field(init=False, repr=False)
    _exact_cookies: dict[str, str] = field(init=False, repr=False)
    _cookie_globs: tuple[tuple[re.Pattern[str], str], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = [category.name for category in self.categories]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate category names in {names}")
        if NECESSARY not in names:
            raise ValueError(f"the {NECESSARY!r} category is required")
        service_names = [service.name for service in self.services]
        if len(set(service_names)) != len(service_names):
            raise ValueError(f"duplicate service names in {service_names}")
        by_host: dict[str, Service] = {}
        exact: dict[str, str] = {}
        globs: list[tuple[re.Pattern[str], str]] = []
        for service in self.services:
            if service.category not in names:
                raise ValueError(
                    f"service {service.name!r}: unknown category {service.category!r}; "
                    f"categories are {', '.join(names)}"
                )
            for host in service.hosts:
                other = by_host.setdefault(host, service)
                if other is not service:
                    raise ValueError(f"host {host!r} is declared by both {other.name!r} and {service.name!r}")
            for cookie in service.cookies:
                if any(char in cookie.name for char in "*?["):
                    globs.append((re.compile(fnmatch.translate(cookie.name)), service.category))
                else:
                    exact.setdefault(cookie.name, service.category)
        object.__setattr__(self, "_by_host", by_host)
        object.__setattr__(self, "_exact_cookies", exact)
        object.__setattr__(self, "_cookie_globs", tuple(globs))

    @property
    def optional_categories(self) -> tuple[str, ...]:
        """The categories a visitor may refuse, in declaration order."""
        return tuple(category.name for category in self.categories if not category.required)

    def category(self, name: str) -> Category | None:
        return next((category for category in self.categories if category.name == name), None)

    def services_in(self, category: str) -> tuple[Service, ...]:
        return tuple(service for service in self.services if service.category == category)

    def service_for_host(self, host: str) -> Service | None:
        """The service declaring ``host`` or one of its parent domains."""
        host = host.lower().rstrip(".")
        while host:
            service = self._by_host.get(host)
            if service is not None:
                return service
            _, _, host = host.partition(".")
        return None

    def cookie_category(self, name: str) -> str | None:
        """The category of a cookie name, or ``None`` when no service declares it."""
        category = self._exact_cookies.get(name)
        if category is not None:
            return category
        for pattern, glob_category in self._cookie_globs:
            if pattern.match(name):
                return glob_category
        return None
