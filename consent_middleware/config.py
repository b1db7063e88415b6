"""Options, their defaults and validation, and TOML loading (SPEC §0).

Every check runs when the middleware is built: bad configuration fails at start-up with a message
that names the option, never later on a request.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

from .locales import AVAILABLE_LANGUAGES
from .privacy import WITHHELD_HEADERS
from .registry import (
    BUILTIN_SERVICES,
    CONSENT_SERVICE_NAME,
    DEFAULT_CATEGORIES,
    GOOGLE_ANALYTICS,
    Category,
    Cookie,
    Registry,
    Service,
    consent_service,
)

__all__ = ["DEFAULT_GEOIP_DATABASE", "BundledDatabase", "ConsentConfig"]

MIN_SECRET_LENGTH: Final = 32
DEFAULT_MAX_AGE: Final = timedelta(days=182)  # CNIL: six months
MAX_MAX_AGE: Final = timedelta(days=395)  # thirteen months
LOG_RETENTION_MARGIN: Final = timedelta(days=365)
LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")
PREFIX_PATTERN = re.compile(r"(/[A-Za-z0-9._~-]+)+")
POLICY_VERSION_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,32}")
COOKIE_DOMAIN_PATTERN = re.compile(r"\.?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z][a-z0-9-]{0,62}")
#: Printable ASCII but space, "," and ";": a source never splits or breaks the header it goes into.
CSP_SOURCE_PATTERN = re.compile(r"[!-+\--:<-~]+")
CSP_DIRECTIVES: Final = ("default-src", "script-src", "style-src", "connect-src", "img-src", "frame-src")
KEY_ADVICE: Final = (
    "secret_key must be a string of at least 32 characters, or a list of them (newest first). "
    'Make one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
)


class BundledDatabase:
    """Sentinel for the geolocation database shipped with the package."""

    def __repr__(self) -> str:
        return "DEFAULT_GEOIP_DATABASE"


DEFAULT_GEOIP_DATABASE: Final = BundledDatabase()

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _duration(value: object, option: str) -> timedelta:
    if isinstance(value, timedelta):
        duration = value
    elif isinstance(value, int) and not isinstance(value, bool):
        duration = timedelta(seconds=value)
    else:
        raise ValueError(f"{option} must be a timedelta or a number of seconds, not {value!r}")
    if duration <= timedelta(0):
        raise ValueError(f"{option} must be positive")
    return duration


def _strings(value: object, option: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"{option} must be a list of strings")
    items = tuple(value)
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"{option} must be a list of strings")
    return items


def _secret_keys(value: object) -> tuple[str, ...]:
    keys = (value,) if isinstance(value, str) else _strings(value, "secret_key") if value else ()
    if not keys or any(len(key) < MIN_SECRET_LENGTH for key in keys):
        raise ValueError(KEY_ADVICE)
    return keys


def _languages(value: object, option: str) -> tuple[str, ...]:
    languages = tuple(dict.fromkeys(code.lower() for code in _strings(value, option)))
    unknown = [code for code in languages if code not in AVAILABLE_LANGUAGES]
    if unknown or not languages:
        raise ValueError(
            f"{option}: no banner texts for {', '.join(unknown) or 'an empty list'}; "
            f"shipped languages are {', '.join(AVAILABLE_LANGUAGES)}"
        )
    return languages


def _networks(value: object) -> tuple[Network, ...]:
    networks = []
    for item in _strings(value, "trusted_proxies"):
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {item!r} is not an IP address or CIDR range") from None
    return tuple(networks)


def _categories(value: object) -> tuple[Category, ...]:
    """The four defaults, with the operator's categories added (or replacing a default of the same name)."""
    merged = {category.name: category for category in DEFAULT_CATEGORIES}
    for item in _items(value, "categories"):
        category = item if isinstance(item, Category) else Category(**_table(item, "categories"))
        merged[category.name] = category
    return tuple(merged.values())


def _services(value: object) -> tuple[Service, ...]:
    services = []
    for item in _items(value, "services"):
        if isinstance(item, Service):
            services.append(item)
        elif isinstance(item, str):
            if item not in BUILTIN_SERVICES:
                raise ValueError(
                    f"services: {item!r} is not a built-in service; "
                    f"built-ins are {', '.join(BUILTIN_SERVICES)}"
                )
            services.append(BUILTIN_SERVICES[item])
        else:
            table = dict(_table(item, "services"))
            table["hosts"] = tuple(table.get("hosts", ()))
            table["cookies"] = tuple(
                Cookie(**_table(cookie, "services.cookies")) if not isinstance(cookie, str) else cookie
                for cookie in table.get("cookies", ())
            )
            services.append(Service(**table))
    return tuple(services)


def _items(value: object, option: str) -> tuple[object, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ValueError(f"{option} must be a list")
    return tuple(value)


def _table(value: object, option: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{option}: each entry must be a table/dict, not {value!r}")
    return value


def _csp(value: object) -> Mapping[str, tuple[str, ...]] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("csp must be a mapping of directive to sources, e.g. {'script-src': ['self']}")
    policy: dict[str, tuple[str, ...]] = {}
    for directive, sources in value.items():
        if directive not in CSP_DIRECTIVES:
            raise ValueError(f"csp: unknown directive {directive!r}; allowed: {', '.join(CSP_DIRECTIVES)}")
        items = _strings(sources, f"csp[{directive!r}]")
        bad = [source for source in items if not CSP_SOURCE_PATTERN.fullmatch(source)]
        if bad:
            raise ValueError(f"csp[{directive!r}]: invalid source {bad[0]!r}")
        policy[directive] = items
    return policy


@dataclass(frozen=True, kw_only=True)
class ConsentConfig:
    """The validated options of a :class:`ConsentMiddleware`; see the README's option table."""

    secret_key: tuple[str, ...]
    prefix: str = "/_consent"
    policy_version: str = "1"
    consent_max_age: timedelta = DEFAULT_MAX_AGE
    languages: tuple[str, ...] = AVAILABLE_LANGUAGES
    default_language: str = "en"
    geoip_database: str | Path | BundledDatabase | None = DEFAULT_GEOIP_DATABASE
    trusted_proxies: tuple[Network, ...] = ()
    device_category: str = "analytics"
    services: tuple[Service, ...] = (GOOGLE_ANALYTICS,)
    categories: tuple[Category, ...] = DEFAULT_CATEGORIES
    block_unknown_cookies: bool = False
    respect_gpc: bool = True
    prefer_browser_language: bool = False
    consent_mode: bool = True
    log_retention: timedelta | None = None
    consent_log: str | None = "sqlite:///consent-log.sqlite3"
    log_spool: str | Path | None = None
    exclude_paths: tuple[str, ...] = ()
    cookie_domain: str | None = None
    csp: Mapping[str, tuple[str, ...]] | None = None
    csp_nonce_key: str = "csp_nonce"
    withheld_headers: tuple[str, ...] = WITHHELD_HEADERS
    settings_button: bool = True
    texts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    registry: Registry = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "secret_key", _secret_keys(self.secret_key))
        if not isinstance(self.prefix, str) or not PREFIX_PATTERN.fullmatch(self.prefix):
            raise ValueError(
                f"prefix must be a path like '/_consent' (no trailing slash), not {self.prefix!r}"
            )
        if not isinstance(self.policy_version, str) or not POLICY_VERSION_PATTERN.fullmatch(
            self.policy_version
        ):
            raise ValueError("policy_version must be 1-32 characters of letters, digits, '.', '_' or '-'")
        max_age = _duration(self.consent_max_age, "consent_max_age")
        if max_age > MAX_MAX_AGE:
            raise ValueError("consent_max_age must be at most 395 days (13 months)")
        set_(self, "consent_max_age", max_age)
        set_(self, "languages", _languages(self.languages, "languages"))
        if self.default_language not in self.languages:
            raise ValueError(
                f"default_language {self.default_language!r} is not among languages {list(self.languages)}"
            )
        if not (
            self.geoip_database is None or isinstance(self.geoip_database, str | Path | BundledDatabase)
        ):  # the file itself is opened (and warned about) by the geolocation module
            raise ValueError("geoip_database must be a path, None, or DEFAULT_GEOIP_DATABASE")
        set_(self, "trusted_proxies", _networks(self.trusted_proxies))
        categories = _categories(self.categories)
        services = _services(self.services)
        if any(service.name == CONSENT_SERVICE_NAME for service in services):
            raise ValueError(f"services: the name {CONSENT_SERVICE_NAME!r} is reserved")
        set_(self, "categories", categories)
        set_(self, "services", services)
        own = consent_service(int(max_age.total_seconds()))
        set_(self, "registry", Registry(categories=categories, services=(own, *services)))
        if self.device_category not in self.registry.optional_categories:
            raise ValueError(
                f"device_category {self.device_category!r} must be one of "
                f"{', '.join(self.registry.optional_categories)}"
            )
        for flag in ("block_unknown_cookies", "respect_gpc", "prefer_browser_language", "consent_mode"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be True or False")
        if not isinstance(self.settings_button, bool):
            raise ValueError("settings_button must be True or False")
        retention = max_age + LOG_RETENTION_MARGIN if self.log_retention is None else self.log_retention
        retention = _duration(retention, "log_retention")
        if retention < max_age:
            raise ValueError(
                "log_retention must be at least consent_max_age: proof of a live consent is kept"
            )
        set_(self, "log_retention", retention)
        if self.consent_log is not None and not (
            isinstance(self.consent_log, str)
            and (self.consent_log.startswith("sqlite:///") or self.consent_log.startswith("postgresql://"))
        ):
            raise ValueError("consent_log must be 'sqlite:///PATH', 'postgresql://...' or None")
        if self.log_spool is not None and not isinstance(self.log_spool, str | Path):
            raise ValueError(
                "log_spool must be a file path or None (consent-log.spool in the working directory)"
            )
        paths = _strings(self.exclude_paths, "exclude_paths")
        if not all(path.startswith("/") for path in paths):
            raise ValueError("exclude_paths must be path prefixes starting with '/'")
        set_(self, "exclude_paths", paths)
        if self.cookie_domain is not None and not (
            isinstance(self.cookie_domain, str) and COOKIE_DOMAIN_PATTERN.fullmatch(self.cookie_domain)
        ):
            raise ValueError(
                f"cookie_domain must be a domain like '.example.com', not {self.cookie_domain!r}"
            )
        set_(self, "csp", _csp(self.csp))
        if not isinstance(self.csp_nonce_key, str) or not self.csp_nonce_key:
            raise ValueError("csp_nonce_key must be a non-empty string")
        set_(self, "texts", _texts(self.texts, self.languages))
        withheld = tuple(name.lower() for name in _strings(self.withheld_headers, "withheld_headers"))
        if any(name in ("host", "cookie", "content-type", "content-length") for name in withheld):
            raise ValueError("withheld_headers: Host, Cookie, Content-Type and Content-Length are needed")
        set_(self, "withheld_headers", withheld)

    @classmethod
    def from_options(cls, config: ConsentConfig | str | Path | None = None, **options: Any) -> ConsentConfig:
        """Build from keyword options, on top of a TOML file (``config=PATH``) or another config."""
        names = {item.name for item in fields(cls) if item.init}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)}; options are {', '.join(sorted(names))}"
            )
        base: dict[str, Any] = {}
        if isinstance(config, ConsentConfig):
            base = {name: getattr(config, name) for name in names}
        elif config is not None:
            base = load_toml(config, names)
        base.update(options)
        if "secret_key" not in base:
            raise ValueError(KEY_ADVICE)
        return cls(**base)


def _texts(value: object, languages: Sequence[str]) -> Mapping[str, Mapping[str, str]]:
    if not isinstance(value, Mapping):
        raise ValueError("texts must map a language code to {key: text}")
    texts: dict[str, dict[str, str]] = {}
    for language, table in value.items():
        if language not in languages:
            raise ValueError(f"texts: {language!r} is not among languages {list(languages)}")
        if not isinstance(table, Mapping) or not all(
            isinstance(key, str) and isinstance(text, str) for key, text in table.items()
        ):
            raise ValueError(f"texts[{language!r}] must map text keys to strings")
        texts[language] = dict(table)
    return texts


def load_toml(path: str | Path, names: Iterable[str]) -> dict[str, Any]:
    """Options from a TOML file: top-level keys are option names; durations are in seconds."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"config: cannot read {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"config: {path} is not valid TOML: {error}") from None
    allowed = set(names)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"config: unknown option(s) {', '.join(unknown)} in {path}")
    if data.get("geoip_database") == "":
        data["geoip_database"] = None
    return data
