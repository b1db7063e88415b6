"""Explicit choice, then the browser's languages, then the default."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consent_middleware.language import parse_accept_language, resolve_language

SUPPORTED = ("en", "nl", "fr", "de")


def test_q_values_order_the_ranges() -> None:
    assert parse_accept_language("en;q=0.5, nl-BE, fr;q=0.9") == [("nl-be", 1.0), ("fr", 0.9), ("en", 0.5)]


def test_zero_and_malformed_q_values_are_dropped() -> None:
    assert parse_accept_language("de;q=0, nl;q=abc, fr;q=2, en") == [("en", 1.0)]


def test_region_matches_its_language() -> None:
    assert (
        resolve_language(explicit=None, accept_language="nl-BE,en;q=0.5", supported=SUPPORTED, default="en")
        == "nl"
    )


def test_explicit_choice_wins() -> None:
    assert resolve_language(explicit="FR", accept_language="nl", supported=SUPPORTED, default="en") == "fr"


def test_unsupported_everything_gives_the_default() -> None:
    assert resolve_language(explicit="xx", accept_language="ja", supported=SUPPORTED, default="en") == "en"


@given(st.text(max_size=2000), st.one_of(st.none(), st.text(max_size=20)))
def test_any_header_and_lang_value_never_raise(header: str, explicit: str | None) -> None:
    assert (
        resolve_language(explicit=explicit, accept_language=header, supported=SUPPORTED, default="en")
        in SUPPORTED
    )
