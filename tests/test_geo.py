"""Geolocation from a real MMDB file read by geoip2, and the language it leads to (SPEC §4)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from consent_middleware import ConsentMiddleware
from consent_middleware.geo import GeoLocator, bundled_database
from tests.conftest import SECRET, html_app
from tests.geodata import (
    AMERICAN_IP,
    BELGIAN_IP,
    BELGIAN_IPV6,
    DUTCH_IP,
    SWISS_IP,
    UNKNOWN_IP,
    write_country_db,
)

SUPPORTED = ["en", "nl", "fr", "de"]


@pytest.fixture(scope="module")
def country_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_country_db(tmp_path_factory.mktemp("geo") / "countries.mmdb")


def banner_language(db: Path | None, client_ip: str, accept_language: str | None, **options: Any) -> str:
    app = ConsentMiddleware(html_app(), secret_key=SECRET, geoip_database=db, languages=SUPPORTED, **options)
    client = TestClient(app, client=(client_ip, 50000))
    headers = {"Accept-Language": accept_language} if accept_language is not None else {}
    language: str = client.get("/_consent", headers=headers).json()["language"]
    return language


@pytest.mark.parametrize(
    ("client_ip", "accept_language", "expected"),
    [
        (BELGIAN_IP, "fr-BE,fr;q=0.9,en;q=0.5", "fr"),
        (BELGIAN_IP, "en-US,en;q=0.9", "nl"),
        (BELGIAN_IP, "de-DE", "de"),
        (DUTCH_IP, "en", "nl"),
        (SWISS_IP, "it-CH", "de"),
        (AMERICAN_IP, "nl", "en"),
        ("10.1.2.3", "nl;q=0.8,en;q=0.5", "nl"),
        ("10.1.2.3", "ja", "en"),
    ],
    ids=["BE-fr", "BE-en", "BE-de", "NL-en", "CH-it", "US-nl", "private-nl", "private-ja"],
)
def test_spec_language_table(country_db: Path, client_ip: str, accept_language: str, expected: str) -> None:
    assert banner_language(country_db, client_ip, accept_language) == expected


def test_ipv6_client_is_located(country_db: Path) -> None:
    assert banner_language(country_db, BELGIAN_IPV6, "de-AT,de;q=0.9") == "de"
    assert banner_language(country_db, BELGIAN_IPV6, None) == "nl"


def test_ipv4_mapped_ipv6_client_is_located(country_db: Path) -> None:
    assert banner_language(country_db, f"::ffff:{BELGIAN_IP}", "fr") == "fr"


def test_address_not_in_the_database_falls_back_to_the_browser(country_db: Path) -> None:
    assert banner_language(country_db, UNKNOWN_IP, "de, en;q=0.5") == "de"


def test_explicit_choice_beats_geolocation(country_db: Path) -> None:
    app = ConsentMiddleware(html_app(), secret_key=SECRET, geoip_database=country_db, languages=SUPPORTED)
    client = TestClient(app, client=(BELGIAN_IP, 50000))
    assert client.get("/_consent?lang=de").json()["language"] == "de"
    assert client.get("/_consent").json()["language"] == "de"  # remembered in consent_lang


def test_prefer_browser_language_swaps_the_middle_steps(country_db: Path) -> None:
    assert banner_language(country_db, BELGIAN_IP, "en-US,en;q=0.9", prefer_browser_language=True) == "en"
    assert banner_language(country_db, BELGIAN_IP, "ja", prefer_browser_language=True) == "nl"


def test_forwarded_client_from_a_trusted_proxy_is_located(country_db: Path) -> None:
    app = ConsentMiddleware(
        html_app(),
        secret_key=SECRET,
        geoip_database=country_db,
        languages=SUPPORTED,
        trusted_proxies=["10.0.0.0/8"],
    )
    client = TestClient(app, client=("10.0.0.2", 50000))
    headers = {"X-Forwarded-For": f"{BELGIAN_IP}, 10.0.0.9", "Accept-Language": "en"}
    assert client.get("/_consent", headers=headers).json()["language"] == "nl"


def test_forwarded_client_from_an_untrusted_peer_is_ignored(country_db: Path) -> None:
    app = ConsentMiddleware(html_app(), secret_key=SECRET, geoip_database=country_db, languages=SUPPORTED)
    client = TestClient(app, client=(AMERICAN_IP, 50000))
    headers = {"X-Forwarded-For": BELGIAN_IP, "Forwarded": f"for={BELGIAN_IP}", "Accept-Language": "fr"}
    assert client.get("/_consent", headers=headers).json()["language"] == "en"


def test_geolocation_can_be_turned_off(country_db: Path) -> None:
    assert banner_language(None, BELGIAN_IP, "en") == "en"


def test_missing_database_warns_at_start_up_and_uses_the_browser(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="consent_middleware"):
        language = banner_language(tmp_path / "missing.mmdb", BELGIAN_IP, "fr")
    assert language == "fr"
    assert "geolocation is off" in caplog.text
    assert "missing.mmdb" in caplog.text


def test_corrupt_database_warns_and_never_fails_a_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corrupt = tmp_path / "corrupt.mmdb"
    corrupt.write_bytes(b"\x00" * 1000)
    with caplog.at_level(logging.WARNING, logger="consent_middleware"):
        assert banner_language(corrupt, BELGIAN_IP, "de") == "de"
    assert "geolocation is off" in caplog.text


def test_a_replaced_database_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    path = write_country_db(tmp_path / "db.mmdb", {"NL": ["81.246.0.0/16"]})
    locator = GeoLocator(path)
    assert locator.country(BELGIAN_IP) == "NL"
    replacement = write_country_db(tmp_path / "new.mmdb", {"BE": ["81.246.0.0/16"]})
    os.replace(replacement, path)
    locator._next_check = 0.0  # the periodic check is due
    assert locator.country(BELGIAN_IP) == "BE"


def test_lookups_are_cached_and_bounded(country_db: Path) -> None:
    locator = GeoLocator(country_db)
    assert locator.country(BELGIAN_IP) == "BE"
    assert BELGIAN_IP in locator._cache
    for index in range(300):
        locator.country(f"81.246.{index % 256}.{index // 256}")
    assert len(locator._cache) <= 65_536


def test_bundled_database_answers_for_belgium() -> None:
    path = bundled_database()
    assert path is not None, "python-geoacumen is installed by `make` (with --no-deps)"
    assert GeoLocator(path).country("81.246.0.1") == "BE"


def test_the_default_is_the_bundled_database() -> None:
    app = ConsentMiddleware(html_app(), secret_key=SECRET, languages=SUPPORTED)
    client = TestClient(app, client=("81.246.0.1", 50000))
    assert client.get("/_consent", headers={"Accept-Language": "en"}).json()["language"] == "nl"


def test_cookie_page_credits_the_bundled_database() -> None:
    page = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET)).get("/_consent/cookies").text
    assert "Geoacumen Country database (Apache-2.0)" in page


def test_cookie_page_names_another_database(country_db: Path) -> None:
    app = ConsentMiddleware(html_app(), secret_key=SECRET, geoip_database=country_db)
    assert "Country database: Test-Country" in TestClient(app).get("/_consent/cookies").text


def test_cookie_page_has_no_credit_without_geolocation() -> None:
    app = ConsentMiddleware(html_app(), secret_key=SECRET, geoip_database=None)
    assert "consent-credit" not in TestClient(app).get("/_consent/cookies").text
