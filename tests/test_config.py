"""Options are validated when the middleware is built: bad configuration fails at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import consent_middleware
from consent_middleware import Category, ConsentConfig, ConsentMiddleware, Cookie, Service
from tests.conftest import SECRET, html_app


def test_public_api_is_sorted_and_complete() -> None:
    assert consent_middleware.__all__ == sorted(consent_middleware.__all__)
    assert set(consent_middleware.__all__) == {
        "Category",
        "ConsentConfig",
        "ConsentMiddleware",
        "Cookie",
        "Service",
    }


def test_missing_secret_says_how_to_make_one() -> None:
    with pytest.raises(ValueError, match=r"secrets\.token_urlsafe"):
        ConsentMiddleware(html_app())


@pytest.mark.parametrize("secret", ["short", "", [], [SECRET, "short"], None])
def test_short_or_empty_secret_is_refused(secret: object) -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        ConsentMiddleware(html_app(), secret_key=secret)


def test_unknown_option_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown option.*polcy_version"):
        ConsentMiddleware(html_app(), secret_key=SECRET, polcy_version="2")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("prefix", "consent", "prefix"),
        ("prefix", "/_consent/", "prefix"),
        ("languages", ["en", "xx"], "no banner texts for xx"),
        ("default_language", "nl", None),
        ("trusted_proxies", ["10.0.0.0/33"], "trusted_proxies"),
        ("device_category", "necessary", "device_category"),
        ("log_retention", 60, "log_retention"),
        ("consent_log", "mysql://x", "consent_log"),
        ("exclude_paths", ["admin"], "exclude_paths"),
        ("cookie_domain", "evil.com; HttpOnly", "cookie_domain"),
        ("csp", {"script-src": ["'self'; report-uri x"]}, "csp"),
        ("respect_gpc", "yes", "respect_gpc"),
        ("services", ["unknown-service"], "built-in"),
        ("texts", {"xx": {}}, "texts"),
    ],
)
def test_invalid_options_fail_at_start_up(option: str, value: object, message: str | None) -> None:
    options: dict[str, Any] = {option: value}
    if option == "default_language":
        options["languages"] = ["en"]
    with pytest.raises(ValueError, match=message or option):
        ConsentMiddleware(html_app(), secret_key=SECRET, **options)


def test_service_in_an_unknown_category_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown category 'ads'"):
        ConsentMiddleware(html_app(), secret_key=SECRET, services=[Service(name="x", category="ads")])


def test_operator_categories_and_services_are_used() -> None:
    video = Service(name="vimeo", category="media", hosts=("vimeo.com",), cookies=(Cookie("vuid"),))
    app = ConsentMiddleware(
        html_app(),
        secret_key=SECRET,
        categories=[Category("media", label="Video")],
        services=["google-analytics", video],
    )
    registry = app.config.registry
    assert registry.optional_categories == ("preferences", "analytics", "marketing", "media")
    assert registry.cookie_category("vuid") == "media"
    assert registry.cookie_category("_ga_ABC") == "analytics"
    assert registry.service_for_host("player.vimeo.com") is video
    assert registry.service_for_host("notvimeo.com") is None
    state = TestClient(app).get("/_consent").json()
    assert state["categories"]["media"] is False


def test_options_load_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "consent.toml"
    path.write_text(
        """
policy_version = "7"
languages = ["en", "nl"]
consent_max_age = 86400

[[categories]]
name = "media"
label = { en = "Video", nl = "Video" }

[[services]]
name = "vimeo"
category = "media"
hosts = ["vimeo.com"]
cookies = [{ name = "vuid", provider = "Vimeo", max_age = 3600, purpose = { en = "Counts views" } }]
""",
        encoding="utf-8",
    )
    app = ConsentMiddleware(html_app(), config=path, secret_key=SECRET, policy_version="8")
    assert app.config.policy_version == "8"  # keyword options win over the file
    assert app.config.languages == ("en", "nl")
    assert app.config.consent_max_age.days == 1
    assert app.config.registry.cookie_category("vuid") == "media"


def test_bad_toml_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "consent.toml"
    path.write_text("policy_version = ", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid TOML"):
        ConsentMiddleware(html_app(), config=path, secret_key=SECRET)


def test_a_config_object_can_be_shared() -> None:
    config = ConsentConfig(secret_key=(SECRET,), languages=("en", "nl"))
    app = ConsentMiddleware(html_app(), config=config, default_language="nl")
    assert app.config.default_language == "nl"
    assert app.config.languages == ("en", "nl")


def test_log_retention_defaults_to_max_age_plus_a_year() -> None:
    config = ConsentMiddleware(html_app(), secret_key=SECRET).config
    assert config.log_retention is not None
    assert config.log_retention.days == 182 + 365
