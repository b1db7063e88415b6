"""The visitor's language (SPEC §4): explicit choice, then geolocation with the browser breaking
ties, then the browser's ``Accept-Language``, then the default.

Country languages come from CLDR through Babel (official and de-facto languages, most spoken
first); no table is written by hand. ``prefer_browser_language`` swaps the two middle steps.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Final

from babel.languages import get_official_languages

__all__ = [
    "browser_languages",
    "country_languages",
    "parse_accept_language",
    "resolve_language",
    "valid_language",
]

#: Only this much of a header is read: a browser sends well under 200 characters.
MAX_HEADER_CHARS: Final = 1024
MAX_RANGES: Final = 32
LANGUAGE_RANGE: Final = re.compile(
    r"\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]{1,5}))?\s*"
)
LANGUAGE_VALUE: Final = re.compile(r"[a-z]{2,3}")
COUNTRY_CODE: Final = re.compile(r"[A-Z]{2}")


def parse_accept_language(header: str) -> list[tuple[str, float]]:
    """Language ranges by preference (highest q first, then header order); malformed parts skipped."""
    ranges: list[tuple[str, float]] = []
    for part in header[:MAX_HEADER_CHARS].split(",")[:MAX_RANGES]:
        match = LANGUAGE_RANGE.fullmatch(part)
        if match is None:
            continue
        tag, q = match.group(1).lower(), match.group(2)
        try:
            quality = 1.0 if q is None else float(q)
        except ValueError:
            continue
        if 0.0 < quality <= 1.0:
            ranges.append((tag, quality))
    ranges.sort(key=lambda item: -item[1])  # stable: header order breaks ties
    return ranges


def browser_languages(header: str, supported: Sequence[str]) -> list[str]:
    """The supported languages the browser accepts, best first (``nl-BE`` counts for ``nl``)."""
    found: list[str] = []
    for tag, _ in parse_accept_language(header):
        primary = tag.partition("-")[0]
        if primary in supported and primary not in found:
            found.append(primary)
    return found


@functools.lru_cache(maxsize=1024)
def country_languages(country: str, supported: tuple[str, ...]) -> tuple[str, ...]:
    """The supported official and de-facto languages of ``country``, most spoken first (CLDR)."""
    if not COUNTRY_CODE.fullmatch(country):
        return ()
    spoken = (code.partition("_")[0] for code in get_official_languages(country, de_facto=True))
    return tuple(code for code in dict.fromkeys(spoken) if code in supported)


def valid_language(value: str | None, supported: Sequence[str]) -> str | None:
    """``value`` when it names a supported language (case-insensitive), else ``None``."""
    if not value or len(value) > 8:
        return None
    code = value.lower()
    return code if LANGUAGE_VALUE.fullmatch(code) and code in supported else None


def resolve_language(
    *,
    explicit: str | None,
    accept_language: str,
    supported: Sequence[str],
    default: str,
    country: str | None = None,
    prefer_browser: bool = False,
) -> str:
    """SPEC §4: explicit choice; the country's languages, the browser breaking ties; the browser; default."""
    return _resolve(
        explicit, accept_language[:MAX_HEADER_CHARS], tuple(supported), default, country, prefer_browser
    )


@functools.lru_cache(maxsize=4096)
def _resolve(
    explicit: str | None,
    accept_language: str,
    supported: tuple[str, ...],
    default: str,
    country: str | None,
    prefer_browser: bool,
) -> str:
    # Cached: a site sees few distinct (header, country) pairs, and each is parsed once.
    chosen = valid_language(explicit, supported)
    if chosen:
        return chosen
    browser = browser_languages(accept_language, supported)
    local = country_languages(country, supported) if country else ()
    if prefer_browser and browser:
        return browser[0]
    if local:
        return next((code for code in browser if code in local), local[0])
    return browser[0] if browser else default
