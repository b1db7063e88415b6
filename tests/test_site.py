"""The sample site with JavaScript off: the banner's form, the 303, and the page after it."""

from __future__ import annotations

import html
import re

import pytest
from starlette.testclient import TestClient

from examples.site import app
from tests.conftest import ORIGIN


def banner_form(page: str) -> tuple[str, dict[str, str]]:
    """The banner form's action and hidden fields, as a browser would read them."""
    banner = page[page.index('id="consent-banner"') :]
    form = re.search(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', banner, re.S)
    assert form is not None
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(2)))
    return html.unescape(form.group(1)), {key: html.unescape(value) for key, value in hidden.items()}


@pytest.mark.parametrize(("decision", "analytics"), [("accept_all", True), ("reject_all", False)])
def test_deciding_without_javascript(decision: str, analytics: bool) -> None:
    client = TestClient(app)
    page = client.get("/about?from=nav")
    assert page.status_code == 200
    assert "googletagmanager.com" in page.text
    action, fields = banner_form(page.text)
    assert fields["next"] == "/about?from=nav"

    response = client.post(
        action, data={**fields, "decision": decision}, headers={"Origin": ORIGIN}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/about?from=nav"

    after = client.get(response.headers["location"])
    assert after.status_code == 200
    assert 'id="consent-banner"' not in after.text
    assert 'id="consent-settings"' in after.text
    assert client.get("/_consent").json()["categories"]["analytics"] is analytics


def test_every_page_of_the_site_shows_the_banner() -> None:
    client = TestClient(app)
    for path in ("/", "/about", "/video", "/contact"):
        response = client.get(path)
        assert response.status_code == 200
        assert 'id="consent-banner"' in response.text


def test_contact_form_still_works_behind_the_middleware() -> None:
    response = TestClient(app).post("/contact", data={"name": "Els <b>"})
    assert "Thank you, Els &lt;b&gt;" in response.text


def test_google_analytics_is_inert_until_analytics_is_granted() -> None:
    client = TestClient(app)
    before = client.get("/").text
    tags = re.findall(r"<script\b[^>]*>", before)
    tracker = [tag for tag in tags if "googletagmanager.com" in tag]
    assert tracker
    assert all('type="text/plain"' in tag and 'data-consent="analytics"' in tag for tag in tracker)
    inline_tag = re.findall(r"<script\b[^>]*>", before[: before.index("gtag('js'")])[-1]
    assert 'type="text/plain"' in inline_tag
    assert 'data-consent="analytics"' in inline_tag

    client.post(
        "/_consent", json={"decision": "custom", "categories": ["analytics"]}, headers={"Origin": ORIGIN}
    )
    after = client.get("/").text
    assert "text/plain" not in after
    assert '<script async src="https://www.googletagmanager.com/gtag/js?id=G-DEMO123456"></script>' in after


def test_video_shows_a_placeholder_until_marketing_is_granted() -> None:
    client = TestClient(app)
    page = client.get("/video").text
    assert 'class="consent-placeholder" data-consent-placeholder="marketing"' in page
    assert "data-consent-src=" in page
    assert '<iframe width="560"' not in page
    client.post("/_consent", json={"decision": "accept_all"}, headers={"Origin": ORIGIN})
    page = client.get("/video").text
    assert "consent-placeholder" not in page
    assert '<iframe width="560" height="315" src="https://www.youtube-nocookie.com/embed/' in page


def test_placeholder_button_grants_its_category_without_javascript() -> None:
    client = TestClient(app)
    client.post(
        "/_consent", json={"decision": "custom", "categories": ["analytics"]}, headers={"Origin": ORIGIN}
    )
    page = client.get("/video").text
    block = page[page.index('class="consent-placeholder"') :]
    form = re.search(r"<form[^>]*>(.*?)</form>", block, re.S)
    assert form is not None
    fields = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(1))
    button = re.search(r'<button type="submit" name="categories" value="(\w+)"', form.group(1))
    assert button is not None
    data: dict[str, list[str]] = {}
    for name, value in [*fields, ("categories", button.group(1))]:
        data.setdefault(name, []).append(html.unescape(value))
    response = client.post("/_consent", data=data, headers={"Origin": ORIGIN}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/video"
    categories = client.get("/_consent").json()["categories"]
    assert categories["marketing"] is True
    assert categories["analytics"] is True  # the placeholder adds its category, it keeps the others
