"""The shipped texts of the banner and the consent pages: one TOML file per language (SPEC §4).

``en.toml``, ``nl.toml``, ... sit next to this module; adding a file adds a language, nothing else
to change. Tables flatten to dotted keys (``[banner] title = "..."`` is ``"banner.title"``) and every
file names its language in its own words under ``language.name``. English is the reference: every
other file has the same keys, and any key a file lacks reads as the English text.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from types import MappingProxyType

from babel import Locale, UnknownLocaleError

__all__ = ["AVAILABLE_LANGUAGES", "FALLBACK_LANGUAGE", "file_texts", "language_name", "load_texts"]

#: The reference language: its file has every key, and it fills any key another file lacks.
FALLBACK_LANGUAGE = "en"

_CODE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")


def _locale_files() -> dict[str, Traversable]:
    files: dict[str, Traversable] = {}
    for entry in resources.files(__name__).iterdir():
        code = entry.name.removesuffix(".toml")
        if entry.name.endswith(".toml") and _CODE.fullmatch(code) and entry.is_file():
            files[code] = entry
    return files


_FILES = _locale_files()

#: The language codes that have a locale file, sorted.
AVAILABLE_LANGUAGES: tuple[str, ...] = tuple(sorted(_FILES))


def _flatten(table: Mapping[str, object], prefix: str, out: dict[str, str], source: str) -> None:
    for key, value in table.items():
        dotted = prefix + key
        if isinstance(value, dict):
            _flatten(value, dotted + ".", out, source)
        elif isinstance(value, str):
            out[dotted] = value
        else:
            raise ValueError(f"{source}: {dotted!r} must be a string, not {type(value).__name__}")


@functools.lru_cache(maxsize=256)
def file_texts(language: str) -> Mapping[str, str]:
    """The texts of ``language``'s own file, flattened, without any fallback; empty when it has no file."""
    entry = _FILES.get(language)
    if entry is None:
        return MappingProxyType({})
    source = f"consent_middleware/locales/{entry.name}"
    try:
        table = tomllib.loads(entry.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{source}: {error}") from error
    flat: dict[str, str] = {}
    _flatten(table, "", flat, source)
    return MappingProxyType(flat)


def _base(language: str) -> str | None:
    """``"nl"`` for ``"nl-BE"``; ``None`` for a code without a region."""
    base, sep, _ = language.partition("-")
    return base if sep else None


@functools.lru_cache(maxsize=256)
def load_texts(language: str) -> Mapping[str, str]:
    """Every text of ``language``: its own file over its base language's (``nl`` for ``nl-BE``) over English.

    A language without any file reads entirely in English.
    """
    merged = dict(file_texts(FALLBACK_LANGUAGE))
    base = _base(language)
    if base is not None:
        merged.update(file_texts(base))
    merged.update(file_texts(language))
    return MappingProxyType(merged)


@functools.lru_cache(maxsize=256)
def language_name(code: str) -> str:
    """The language's own name ("Nederlands"): its file's ``language.name``, else CLDR's, else the code."""
    name = file_texts(code).get("language.name")
    if name:
        return name
    try:
        locale = Locale.parse(code, sep="-")
    except (ValueError, TypeError, UnknownLocaleError):
        return code
    display = locale.get_display_name(locale) or code
    return display[:1].upper() + display[1:]
