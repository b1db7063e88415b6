"""The shipped locale files: every official EU language, complete, translated, and small enough (SPEC §4).

English (en.toml) is the reference; these tests hold every other file to its keys, its placeholders
and to actually being translated, and keep the banner under 4 KB with all languages offered.
"""

from __future__ import annotations

import re

import pytest
from markupsafe import escape

from consent_middleware import locales
from consent_middleware.locales import AVAILABLE_LANGUAGES, FALLBACK_LANGUAGE, file_texts
from tests.conftest import EU_LANGUAGES
from tests.test_render import NONCE, make_renderer

TRANSLATIONS = tuple(code for code in AVAILABLE_LANGUAGES if code != FALLBACK_LANGUAGE)

# Keys whose value is the same in every language: proper names, which are never translated.
SAME_IN_EVERY_LANGUAGE = frozenset({"service.google-analytics.label"})  # the product's name

# Keys whose English value some languages legitimately use as is: key -> those languages. Anything
# else equal to the English text is taken to be an untranslated string.
SAME_AS_ENGLISH_IN: dict[str, frozenset[str]] = {
    # "Cookie" is the loanword these languages (and their data-protection authorities) use for the
    # column heading; the others have a word of their own (Kaka, Küpsis, Sīkdatne, Fianán, ...).
    "cookies.cookie": frozenset({"da", "de", "el", "es", "fr", "it", "mt", "nl", "pt", "ro"}),
    # "Marketing" is the usual, unadapted label of the category in these languages' consent banners.
    "category.marketing.label": frozenset({"da", "de", "hu", "it", "nl", "pt", "ro"}),
    # French "Services" is spelled like the English word.
    "preferences.services": frozenset({"fr"}),
}

_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
BANNER_LIMIT = 4096


def placeholders(text: str) -> list[str]:
    return sorted(_PLACEHOLDER.findall(text))


def test_every_official_eu_language_is_available() -> None:
    missing = set(EU_LANGUAGES) - set(AVAILABLE_LANGUAGES)
    assert not missing, f"no locale file for {sorted(missing)}"


@pytest.mark.parametrize("code", TRANSLATIONS)
def test_file_has_exactly_the_english_keys(code: str) -> None:
    english = file_texts(FALLBACK_LANGUAGE)
    texts = file_texts(code)
    missing = [key for key in english if key not in texts]
    extra = [key for key in texts if key not in english]
    assert not missing, f"{code}.toml lacks {missing}"
    assert not extra, f"{code}.toml has keys en.toml does not: {extra}"
    assert list(texts) == list(english), f"{code}.toml: keys not in en.toml's order"
    assert all(value.strip() == value and value for value in texts.values()), code


@pytest.mark.parametrize("code", TRANSLATIONS)
def test_no_text_is_left_in_english(code: str) -> None:
    english = file_texts(FALLBACK_LANGUAGE)
    untranslated = [
        key
        for key, value in file_texts(code).items()
        if value == english.get(key)
        and key not in SAME_IN_EVERY_LANGUAGE
        and code not in SAME_AS_ENGLISH_IN.get(key, frozenset())
    ]
    assert not untranslated, f"{code}.toml: still the English text for {untranslated}"


def test_the_allow_lists_are_still_needed() -> None:
    """An allowed exception that no file uses any more is dropped from the list, keeping it small."""
    english = file_texts(FALLBACK_LANGUAGE)
    for key in SAME_IN_EVERY_LANGUAGE:
        assert all(file_texts(code)[key] == english[key] for code in TRANSLATIONS), key
    for key, codes in SAME_AS_ENGLISH_IN.items():
        assert codes <= set(TRANSLATIONS), key
        assert all(file_texts(code)[key] == english[key] for code in codes), key


@pytest.mark.parametrize("code", TRANSLATIONS)
def test_placeholders_are_kept(code: str) -> None:
    english = file_texts(FALLBACK_LANGUAGE)
    for key, value in file_texts(code).items():
        if key in english:  # an extra key is test_file_has_exactly_the_english_keys' finding
            assert placeholders(value) == placeholders(english[key]), (code, key)


@pytest.mark.parametrize("code", TRANSLATIONS)
def test_typographic_quotes_not_straight_ones(code: str) -> None:
    for key, value in file_texts(code).items():
        assert '"' not in value, (code, key)


def test_language_names_are_all_different() -> None:
    names = {code: file_texts(code)["language.name"] for code in AVAILABLE_LANGUAGES}
    duplicates = {name for name in names.values() if list(names.values()).count(name) > 1}
    assert not duplicates, duplicates
    assert all(locales.language_name(code) == name for code, name in names.items())


def test_banner_stays_under_4_kb_in_every_language() -> None:
    renderer = make_renderer(languages=AVAILABLE_LANGUAGES)
    sizes = {
        code: len(
            renderer.banner(
                language=code, next_path="/products/page?id=12", nonce=NONCE, gpc=True, reload=True
            ).encode()
        )
        for code in AVAILABLE_LANGUAGES
    }
    too_big = {code: size for code, size in sizes.items() if size >= BANNER_LIMIT}
    assert not too_big, too_big


@pytest.mark.parametrize("code", TRANSLATIONS)
def test_banner_is_rendered_in_the_language(code: str) -> None:
    renderer = make_renderer(languages=AVAILABLE_LANGUAGES)
    markup = renderer.banner(language=code, next_path="/", nonce=None, gpc=True)
    assert f'<div id="consent-banner" lang="{code}"' in markup
    texts = file_texts(code)
    for key in ("banner.title", "banner.accept_all", "banner.reject_all", "banner.gpc", "settings.label"):
        assert str(escape(texts[key])) in markup, key
