"""The banner as a visitor sees it, on a desktop and a phone, light and dark: it fits the screen,
its two choices look the same (no dark pattern), and the pictures go to ``docs/screenshots/``.

A picture is rewritten only when it changed, so that running the tests leaves the tree clean.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from consent_middleware.locales import load_texts
from tests.e2e.conftest import SCREENSHOTS, Launch, Site

EN = load_texts("en")
SCREENS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "mobile": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
BUTTON_LOOK = """(button) => {
    const style = getComputedStyle(button);
    const box = button.getBoundingClientRect();
    return [style.backgroundColor, style.color, style.borderColor, style.fontSize, style.fontWeight,
            Math.round(box.width), Math.round(box.height)];
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("screen", list(SCREENS))
def test_banner_screenshot(browser: Launch, site: Site, screen: str, scheme: str) -> None:
    page = browser(**SCREENS[screen], color_scheme=scheme, reduced_motion="reduce").page
    page.goto(site.url("/"))
    banner = page.locator("#consent-banner")
    expect(banner).to_be_visible()
    expect(banner).to_be_in_viewport(ratio=1)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), (
        "no sideways scroll"
    )
    accept = banner.get_by_role("button", name=EN["banner.accept_all"])
    reject = banner.get_by_role("button", name=EN["banner.reject_all"])
    assert accept.evaluate(BUTTON_LOOK) == reject.evaluate(BUTTON_LOOK), "accept and reject must look alike"
    expected = "rgb(31, 31, 31)" if scheme == "dark" else "rgb(255, 255, 255)"
    expect(banner).to_have_css("background-color", expected)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")

    picture = page.screenshot(animations="disabled", caret="hide")
    target = SCREENSHOTS / f"banner-{screen}-{scheme}.png"
    if not target.exists() or target.read_bytes() != picture:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target.write_bytes(picture)
    assert picture.startswith(b"\x89PNG")
    assert len(picture) < 400_000, "keep the pictures small enough to commit"
