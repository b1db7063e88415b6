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
