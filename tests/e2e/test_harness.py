"""The checks of the other tests catch a tracker: a page that hints at, or loads from, a tracker host
without the middleware in the way (served by Playwright's routing, not by the site) is seen."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Launch, Site

UNGATED = {
    "dns-prefetch": '<link rel="dns-prefetch" href="//analytics.google.com">',
    "preconnect": '<link rel="preconnect" href="https://www.google-analytics.com">',
    "image": '<img src="https://www.google-analytics.com/collect?v=1&amp;t=pageview" alt="">',
    "beacon": '<script>navigator.sendBeacon("https://region1.google-analytics.com/g/collect?v=2")</script>',
}


@pytest.mark.parametrize("tag", list(UNGATED))
def test_an_ungated_tracker_is_caught(browser: Launch, site: Site, tag: str) -> None:
    visitor = browser()
    body = f'<!doctype html><html lang="en"><title>ungated</title>{UNGATED[tag]}<p>ungated</p></html>'
    visitor.page.route(
        site.url("/__ungated"),
        lambda route: route.fulfill(body=body, content_type="text/html; charset=utf-8"),
    )
    visitor.page.goto(site.url("/__ungated"))
    with pytest.raises(AssertionError, match=r"analytics\.google\.com|google-analytics\.com"):
        visitor.assert_no_tracker_traffic()
