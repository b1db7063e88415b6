"""The PREFIX routes: state, decisions, withdrawal, same-origin checks, redirects, limits, pages."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from consent_middleware import ConsentMiddleware
from tests.conftest import ORIGIN, SECRET, html_app

SAME_ORIGIN = {"Origin": ORIGIN}


@pytest.fixture
def client() -> TestClient:
    return TestClient(ConsentMiddleware(html_app(), secret_key=SECRET))


def decide(client: TestClient, **form: object) -> dict[str, object]:
    response = client.post("/_consent", json=form, headers=SAME_ORIGIN)
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()
    return data


def test_state_of_a_new_visitor(client: TestClient) -> None:
    response = client.get("/_consent")
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "consent_id": None,
        "version": "1",
        "decided": False,
        "categories": {"necessary": True, "preferences": False, "analytics": False, "marketing": False},
        "language": "en",
        "expires_at": None,
        "gpc": False,
        "method": None,
    }


def test_form_accept_all_redirects_back_with_303(client: TestClient) -> None:
    response = client.post(
        "/_consent",
        data={"decision": "accept_all", "next": "/about?x=1"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/about?x=1"
    assert client.get("/_consent").json()["categories"]["marketing"] is True


def test_json_decision_answers_200_with_the_state(client: TestClient) -> None:
    data = decide(client, decision="reject_all")
    assert data["decided"] is True
    assert data["method"] == "reject_all"
    assert data["categories"] == {
        "necessary": True,
        "preferences": False,
        "analytics": False,
        "marketing": False,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(data["expires_at"]))


def test_custom_with_repeated_form_fields(client: TestClient) -> None:
    client.post(
        "/_consent",
        data={"decision": "custom", "categories": ["analytics", "preferences"]},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    categories = client.get("/_consent").json()["categories"]
    assert categories == {"necessary": True, "preferences": True, "analytics": True, "marketing": False}


def test_custom_without_categories_means_necessary_only(client: TestClient) -> None:
    data = decide(client, decision="custom")
    assert data["categories"] == {
        "necessary": True,
        "preferences": False,
        "analytics": False,
        "marketing": False,
    }


def test_categories_are_ignored_for_accept_and_reject(client: TestClient) -> None:
    data = decide(client, decision="reject_all", categories=["analytics"])
    assert data["categories"]["analytics"] is False  # type: ignore[index]


def test_consent_id_is_kept_across_decisions_and_withdrawal(client: TestClient) -> None:
    first = decide(client, decision="accept_all")["consent_id"]
    second = decide(client, decision="custom", categories=["analytics"])["consent_id"]
    withdrawn = client.post("/_consent/withdraw", json={}, headers=SAME_ORIGIN).json()
    assert first == second == withdrawn["consent_id"]
    assert withdrawn["method"] == "withdraw"
    assert withdrawn["categories"] == {
        "necessary": True,
        "preferences": False,
        "analytics": False,
        "marketing": False,
    }


def test_withdraw_by_form_redirects(client: TestClient) -> None:
    decide(client, decision="accept_all")
    response = client.post(
        "/_consent/withdraw", data={"next": "/privacy"}, headers=SAME_ORIGIN, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/privacy"
    assert client.get("/_consent").json()["categories"]["analytics"] is False


def test_a_refusal_is_remembered_like_an_acceptance(client: TestClient) -> None:
    decide(client, decision="reject_all")
    page = client.get("/")
    assert b'id="consent-banner"' not in page.content


def test_policy_version_change_voids_earlier_decisions() -> None:
    first = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET, policy_version="1"))
    decide(first, decision="accept_all")
    second = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET, policy_version="2"))
    second.cookies = first.cookies
    assert b'id="consent-banner"' in second.get("/").content


def test_same_origin_referer_without_origin_is_accepted(client: TestClient) -> None:
    response = client.post(
        "/_consent",
        data={"decision": "accept_all"},
        headers={"Referer": ORIGIN + "/about"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/about"  # no next: back to the Referer's page


def test_unknown_decision_is_a_400_naming_the_allowed_values(client: TestClient) -> None:
    response = client.post("/_consent", data={"decision": "<b>yes</b>"}, headers=SAME_ORIGIN)
    assert response.status_code == 400
    assert "&lt;b&gt;yes&lt;/b&gt;" in response.text
    assert "accept_all, reject_all, custom" in response.text
    assert response.headers["x-content-type-options"] == "nosniff"


def test_missing_decision_is_a_400(client: TestClient) -> None:
    response = client.post("/_consent", data={}, headers=SAME_ORIGIN)
    assert response.status_code == 400
    assert "unknown decision nothing; allowed: accept_all, reject_all, custom" in response.text


def test_unknown_category_is_a_400_naming_it_and_the_allowed_ones(client: TestClient) -> None:
    response = client.post(
        "/_consent", json={"decision": "custom", "categories": ["analytics", "spying"]}, headers=SAME_ORIGIN
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "unknown category 'spying'; allowed: necessary, preferences, analytics, marketing"
    }


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/json", b"{not json", "not valid JSON"),
        ("application/json", b"[1, 2]", "must be an object"),
        ("application/json", b'{"decision": 1}', "'decision' must be a string"),
        (
            "application/json",
            b'{"decision": "custom", "categories": "analytics"}',
            "'categories' must be a list",
        ),
        ("application/x-www-form-urlencoded", b"decision=\xff", "not valid UTF-8"),
        ("application/x-www-form-urlencoded", b"decision=accept_all&decision=reject_all", "several"),
    ],
)
def test_malformed_bodies_are_400s_that_say_why(
    client: TestClient, content_type: str, body: bytes, message: str
) -> None:
    response = client.post("/_consent", content=body, headers={**SAME_ORIGIN, "Content-Type": content_type})
    assert response.status_code == 400
    assert message in response.text


def test_unsupported_content_type_is_a_415(client: TestClient) -> None:
    response = client.post("/_consent", content=b"<x/>", headers={**SAME_ORIGIN, "Content-Type": "text/xml"})
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.text


def test_unknown_route_under_the_prefix_is_404(client: TestClient) -> None:
    assert client.get("/_consent/nope").status_code == 404


def test_preferences_page_has_nothing_ticked_for_a_new_visitor(client: TestClient) -> None:
    response = client.get("/_consent/preferences?next=/about")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "private" in response.headers["cache-control"]
    assert 'name="categories"' in response.text
    assert "checked" not in response.text
    assert 'value="/about"' in response.text


def test_preferences_page_shows_the_current_choice(client: TestClient) -> None:
    decide(client, decision="custom", categories=["analytics"])
    page = client.get("/_consent/preferences").text
    checked = re.findall(r'<input[^>]*value="(\w+)"[^>]*checked', page)
    assert checked == ["analytics"]


def test_preferences_page_posts_without_javascript(client: TestClient) -> None:
    response = client.post(
        "/_consent",
        data={"decision": "custom", "categories": ["preferences"], "next": "/about"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert response.headers["location"] == "/about"
    assert client.get("/_consent").json()["categories"]["preferences"] is True


def test_cookie_page_lists_the_declared_cookies(client: TestClient) -> None:
    page = client.get("/_consent/cookies").text
    for name in ("_ga", "_ga_*", "_gid", "consent", "consent_lang"):
        assert f">{name}<" in page


def test_pages_follow_the_lang_query(client: TestClient) -> None:
    response = client.get("/_consent/cookies?lang=nl")
    assert response.headers["content-language"] == "nl"
    assert response.headers["set-cookie"].startswith("consent_lang=nl;")


def test_static_assets_have_hashed_names_and_a_long_cache(client: TestClient) -> None:
    page = client.get("/").text
    urls = re.findall(r'(?:src|href)="(/_consent/static/[^"]+)"', page)
    assert {url.rsplit(".", 1)[1] for url in urls} == {"js", "css"}
    for url in urls:
        assert re.fullmatch(r"/_consent/static/banner\.[0-9a-f]{12}\.(js|css)", url)
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert client.get(url, headers={"If-None-Match": response.headers["etag"]}).status_code == 304
