"""What a visitor meets, in Chromium over real HTTP, with Google Analytics replaced by a stand-in.

Every wait waits for a condition (Playwright's auto-waiting, ``expect``, ``wait_for_function``,
the stand-in's record); "nothing happened" is read from the stand-in and from the browser's own
network log once the browser has closed (see ``Browser.assert_no_tracker_traffic``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

import pytest
from playwright.sync_api import Locator, Page, expect

from consent_middleware.locales import load_texts
from tests.e2e.conftest import Browser, Launch, Site
from tests.e2e.tracker import GOOGLE_ANALYTICS_HOSTS

EN = load_texts("en")
NL = load_texts("nl")
PAGES = ("/", "/about", "/video", "/contact", "/trackers", "/_consent/preferences", "/_consent/cookies")
#: The sample site's Google Analytics tag, live.
GA_SCRIPT = "script[src^='https://www.googletagmanager.com/gtag/js']:not([type='text/plain'])"
#: The sample site's two Google Analytics scripts (the tag and its inline config), made inert.
INERT_GA_SCRIPTS = "script[type='text/plain'][data-consent='analytics']"
#: ``window.dataLayer`` as JSON: gtag pushes ``arguments`` objects, Tag Manager plain objects.
DATA_LAYER = """() => (window.dataLayer || []).map(
    (entry) => typeof entry.length === "number" ? Array.from(entry) : entry
)"""
DENIED = {
    "ad_storage": "denied",
    "ad_user_data": "denied",
    "ad_personalization": "denied",
    "analytics_storage": "denied",
    "functionality_storage": "denied",
    "personalization_storage": "denied",
    "security_storage": "granted",
}


def banner(page: Page) -> Locator:
    return page.locator("#consent-banner")


def ga_cookies(visitor: Browser) -> list[dict[str, Any]]:
    return [dict(cookie) for cookie in visitor.context.cookies() if cookie["name"].startswith("_ga")]


def consent_commands(page: Page) -> list[list[Any]]:
    return [
        entry for entry in page.evaluate(DATA_LAYER) if isinstance(entry, list) and entry[:1] == ["consent"]
    ]


def test_before_any_choice_nothing_reaches_a_tracker(browser: Launch, site: Site) -> None:
    visitor = browser()
    page = visitor.page
    for path in PAGES:
        page.goto(site.url(path))
        if not path.startswith("/_consent/"):
            expect(banner(page)).to_be_visible()
        page.wait_for_load_state("networkidle")
    # The trackers page's tags are all there, inert.
    page.goto(site.url("/trackers"))
    assert page.locator("[data-consent='analytics']").count() >= 8
    assert page.locator("link[href*='google'], img[src*='google'], source[srcset*='google']").count() == 0
    assert consent_commands(page) == [["consent", "default", DENIED]]
    assert not ga_cookies(visitor)
    visitor.assert_no_tracker_traffic()


def test_rejecting_keeps_every_tracker_away_after_a_reload_too(browser: Launch, site: Site) -> None:
    visitor = browser()
    page = visitor.page
    page.goto(site.url("/trackers"))
    page.get_by_role("button", name=EN["banner.reject_all"]).click()
    expect(banner(page)).to_have_count(0)
    expect(page.locator("#consent-settings")).to_be_visible()
    assert consent_commands(page)[-1][:2] == ["consent", "update"]
    assert consent_commands(page)[-1][2]["analytics_storage"] == "denied"
    state = visitor.state()
    assert state["decided"] is True
    assert state["categories"] == {
        "necessary": True,
        "preferences": False,
        "analytics": False,
        "marketing": False,
    }

    page.reload()
    expect(page.locator("#consent-settings")).to_be_visible()
    expect(banner(page)).to_have_count(0)
    assert page.locator("[data-consent='analytics']").count() >= 8
    for path in ("/", "/video"):
        page.goto(site.url(path))
        expect(page.locator(INERT_GA_SCRIPTS)).to_have_count(2)
        page.wait_for_load_state("networkidle")
    assert not ga_cookies(visitor)
    visitor.assert_no_tracker_traffic()


def test_accepting_loads_google_analytics_once_without_a_reload(browser: Launch, site: Site) -> None:
    visitor = browser()
    page = visitor.page
    traffic = visitor.tracker.traffic
    page.goto(site.url("/"))
    expect(banner(page)).to_be_visible()
    navigations: list[str] = []
    page.on(
        "framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None
    )
    page.evaluate("() => { window.__sameDocument = true; }")
    before = traffic.mark()

    page.get_by_role("button", name=EN["banner.accept_all"]).click()
    expect(banner(page)).to_have_count(0)
    expect(page.locator("#consent-settings")).to_be_focused()
    page.wait_for_function("() => window.__gtagStandIn && window.__gtagStandIn.hits === 1")
    hit = traffic.wait_for_hit("region1.google-analytics.com", "/g/collect", after=before)
    query = parse_qs(hit.query)
    assert query["tid"] == ["G-DEMO123456"]
    assert query["gcs"] == ["G111"], "the hit should say analytics storage was granted"

    # No reload: the same document, and the tag loaded exactly once.
    assert page.evaluate("() => window.__sameDocument") is True
    assert navigations == []
    assert page.evaluate("() => window.__gtagStandIn.loads") == 1
    _, hits = traffic.since(before)
    assert [h.url for h in hits if h.path == "/gtag/js"] == [
        "https://www.googletagmanager.com/gtag/js?id=G-DEMO123456"
    ]
    expect(page.locator(GA_SCRIPT)).to_have_count(1)

    # Consent Mode: the default (all denied) came first, the update granted everything, and both
    # came before the tag's own config.
    layer = page.evaluate(DATA_LAYER)
    commands = [entry[:1] if entry[0] == "js" else entry[:2] for entry in layer if isinstance(entry, list)]
    assert commands == [["consent", "default"], ["consent", "update"], ["js"], ["config", "G-DEMO123456"]]
    assert layer[0][2] == DENIED
    assert set(layer[1][2].values()) == {"granted"}
    assert layer[1][2]["analytics_storage"] == "granted"

    # _ga, set by the tag on the registrable domain, as Google's does.
    page.wait_for_function("() => /(^|; )_ga=GA1\\.1\\./.test(document.cookie)")
    assert [(c["name"], c["domain"]) for c in ga_cookies(visitor)] == [("_ga", ".brightlane.test")]
    state = visitor.state()
    assert state["categories"]["analytics"] is True
    assert state["method"] == "accept_all"
    record = page.evaluate("() => fetch('/_consent/record').then((response) => response.json())")
    assert [entry["method"] for entry in record["entries"]] == ["accept_all"], "the decision is in the log"

    # Next page: the tag is emitted as written and runs from the start.
    page.goto(site.url("/about"))
    expect(page.locator(INERT_GA_SCRIPTS)).to_have_count(0)
    page.wait_for_function("() => window.__gtagStandIn && window.__gtagStandIn.hits === 1")


def test_withdrawing_on_the_preferences_page_removes_ga_and_stops_the_hits(
    browser: Launch, site: Site
) -> None:
    visitor = browser()
    page = visitor.page
    page.goto(site.url("/"))
    page.get_by_role("button", name=EN["banner.accept_all"]).click()
    page.wait_for_function("() => /(^|; )_ga=/.test(document.cookie)")
    assert ga_cookies(visitor)

    page.locator("#consent-settings").click()
    expect(page).to_have_url(re.compile(r"/_consent/preferences"))
    analytics = page.get_by_role("checkbox", name=re.compile("Analytics|Statistics", re.I))
    expect(analytics).to_be_checked()
    page.get_by_role("button", name=EN["banner.reject_all"]).click()
    expect(page).to_have_url(site.url("/"))

    assert not ga_cookies(visitor), "withdrawing should expire _ga on the registrable domain too"
    assert visitor.state()["categories"]["analytics"] is False
    visitor.mark("/?after-withdrawal")
    for path in ("/", "/about", "/trackers"):
        page.goto(site.url(path))
        expect(page.locator("#consent-settings")).to_be_visible()
        page.wait_for_load_state("networkidle")
        assert page.evaluate("() => window.__gtagStandIn === undefined")
    assert not ga_cookies(visitor)
    visitor.assert_no_tracker_traffic()


def test_the_video_shows_a_placeholder_and_loads_after_its_button(browser: Launch, site: Site) -> None:
    visitor = browser()
    page = visitor.page
    traffic = visitor.tracker.traffic
    page.goto(site.url("/video"))
    placeholder = page.locator(".consent-placeholder[data-consent-placeholder='marketing']")
    video = page.locator("iframe[title='Product video']")
    expect(placeholder).to_be_visible()
    expect(placeholder).to_contain_text("Marketing")
    expect(video).to_be_hidden()
    assert video.get_attribute("src") is None
    assert (video.get_attribute("data-consent-src") or "").startswith(
        "https://www.youtube-nocookie.com/embed/"
    )
    before = traffic.mark()

    placeholder.get_by_role("button").click()
    expect(placeholder).to_have_count(0)
    expect(video).to_be_visible()
    expect(video).to_be_focused()
    expect(page.frame_locator("iframe[title='Product video']").locator("#video")).to_have_text("Playing")
    traffic.wait_for_hit("www.youtube-nocookie.com", "/embed/dQw4w9WgXcQ", after=before)
    expect(banner(page)).to_have_count(0)
    state = visitor.state()
    assert state["categories"]["marketing"] is True
    assert state["categories"]["analytics"] is False
    # Marketing is not analytics: Google Analytics stays away.
    visitor.assert_no_tracker_traffic(GOOGLE_ANALYTICS_HOSTS)


@pytest.mark.parametrize(("decision", "granted"), [("accept_all", True), ("reject_all", False)])
def test_without_javascript_the_banner_form_decides_and_comes_back(
    browser: Launch, site: Site, decision: str, granted: bool
) -> None:
    visitor = browser(java_script_enabled=False)
    page = visitor.page
    page.goto(site.url("/about?from=nav"))
    expect(banner(page)).to_be_visible()
    page.get_by_role("button", name=EN[f"banner.{decision}"]).click()
    expect(page).to_have_url(site.url("/about?from=nav"))
    expect(banner(page)).to_have_count(0)
    expect(page.locator("#consent-settings")).to_be_visible()
    expect(page.locator(INERT_GA_SCRIPTS)).to_have_count(0 if granted else 2)
    response = page.goto(site.url("/_consent"))
    assert response is not None
    categories = response.json()["categories"]
    assert categories == {
        "necessary": True,
        "preferences": granted,
        "analytics": granted,
        "marketing": granted,
    }


def test_without_javascript_the_preferences_page_and_placeholder_work(browser: Launch, site: Site) -> None:
    visitor = browser(java_script_enabled=False)
    page = visitor.page
    page.goto(site.url("/video"))
    page.locator(".consent-placeholder").get_by_role("button").click()
    expect(page).to_have_url(site.url("/video"))
    expect(page.locator("iframe[title='Product video']")).to_have_attribute(
        "src", re.compile(r"^https://www\.youtube-nocookie\.com/embed/")
    )
    page.locator("#consent-settings").click()
    analytics = page.get_by_role("checkbox", name=re.compile("Analytics|Statistics", re.I))
    marketing = page.locator("#consent-cat-marketing")
    expect(marketing).to_be_checked()
    analytics.check()
    marketing.uncheck()
    page.get_by_role("button", name=EN["preferences.save"]).click()
    expect(page).to_have_url(site.url("/video"))
    response = page.goto(site.url("/_consent"))
    assert response is not None
    assert response.json()["categories"] == {
        "necessary": True,
        "preferences": False,
        "analytics": True,
        "marketing": False,
    }


def focus_style(page: Page) -> dict[str, Any]:
    style: dict[str, Any] = page.evaluate(
        """() => {
            const element = document.activeElement;
            const style = getComputedStyle(element);
            return {
                id: element.id, tag: element.localName, text: element.textContent.trim().slice(0, 40),
                focusVisible: element.matches(':focus-visible'),
                outlineStyle: style.outlineStyle, outlineWidth: parseFloat(style.outlineWidth),
                outlineColor: style.outlineColor, boxShadow: style.boxShadow,
                // What the ring is drawn on: the middleware's box around the control.
                background: getComputedStyle(
                    element.closest("#consent-banner, .consent-page") || element
                ).backgroundColor,
            };
        }"""
    )
    return style


def assert_focus_visible(page: Page, target: Locator) -> None:
    expect(target).to_be_focused()
    style = focus_style(page)
    assert style["focusVisible"], style
    visible_outline = style["outlineStyle"] not in ("none", "hidden") and style["outlineWidth"] >= 2
    assert visible_outline or style["boxShadow"] != "none", f"no visible focus indicator: {style}"
    if visible_outline:
        assert style["outlineColor"] not in ("rgba(0, 0, 0, 0)", style["background"]), (
            f"focus ring unseen: {style}"
        )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_keyboard_reaches_every_banner_control_with_a_visible_focus(
    browser: Launch, site: Site, scheme: str
) -> None:
    visitor = browser(color_scheme=scheme)
    page = visitor.page
    page.goto(site.url("/"))
    box = banner(page)
    expect(page.locator("#consent-banner-title")).to_be_focused()
    controls = [
        box.get_by_role("button", name=EN["banner.accept_all"]),
        box.get_by_role("button", name=EN["banner.reject_all"]),
        box.get_by_role("link", name=EN["banner.choose"]),
        box.get_by_role("link", name=EN["banner.cookies"]),
        box.locator("summary"),
    ]
    for control in controls:
        page.keyboard.press("Tab")
        assert_focus_visible(page, control)
    for control in reversed(controls[:-1]):
        page.keyboard.press("Shift+Tab")
        assert_focus_visible(page, control)
    for control in controls[1:]:
        page.keyboard.press("Tab")
        assert_focus_visible(page, control)

    # The language list opens with Space, its links are reachable, Escape folds it: no decision.
    page.keyboard.press("Space")
    expect(box.locator("details")).to_have_attribute("open", "")
    page.keyboard.press("Tab")
    assert_focus_visible(page, box.locator("details a").first)
    page.keyboard.press("Escape")
    expect(box.locator("details")).not_to_have_attribute("open", "")
    expect(box).to_be_visible()
    assert visitor.state()["decided"] is False, "Escape is no decision"


def tab_to(page: Page, target: Locator, limit: int = 30) -> None:
    """Tab until ``target`` has the focus (a bounded loop), then check that the focus shows."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("(element) => element === document.activeElement"):
            assert_focus_visible(page, target)
            return
    raise AssertionError(f"{limit} presses of Tab never reached {target}")


def test_keyboard_accepts_with_enter(browser: Launch, site: Site) -> None:
    visitor = browser()
    page = visitor.page
    page.goto(site.url("/"))
    tab_to(page, banner(page).get_by_role("button", name=EN["banner.accept_all"]))
    page.keyboard.press("Enter")
    expect(banner(page)).to_have_count(0)
    assert_focus_visible(page, page.locator("#consent-settings"))
    page.wait_for_function("() => window.__gtagStandIn && window.__gtagStandIn.hits === 1")
    assert visitor.state()["categories"]["analytics"] is True


def test_keyboard_rejects_with_space_then_changes_the_choice_on_the_preferences_page(
    browser: Launch, site: Site
) -> None:
    visitor = browser()
    page = visitor.page
    page.goto(site.url("/about"))
    tab_to(page, banner(page).get_by_role("button", name=EN["banner.reject_all"]))
    page.keyboard.press("Space")
    expect(banner(page)).to_have_count(0)
    settings = page.locator("#consent-settings")
    assert_focus_visible(page, settings)
    assert visitor.state()["categories"]["analytics"] is False

    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/_consent/preferences\?next=/about$"))
    analytics = page.locator("#consent-cat-analytics")
    tab_to(page, analytics)
    page.keyboard.press("Space")
    expect(analytics).to_be_checked()
    tab_to(page, page.get_by_role("button", name=EN["preferences.save"]))
    page.keyboard.press("Enter")
    expect(page).to_have_url(site.url("/about"))
    assert visitor.state()["categories"] == {
        "necessary": True,
        "preferences": False,
        "analytics": True,
        "marketing": False,
    }


@pytest.mark.parametrize(
    ("link", "path"), [("banner.choose", "/_consent/preferences"), ("banner.cookies", "/_consent/cookies")]
)
def test_keyboard_opens_the_preferences_and_cookie_pages(
    browser: Launch, site: Site, link: str, path: str
) -> None:
    page = browser().page
    page.goto(site.url("/contact"))
    tab_to(page, banner(page).get_by_role("link", name=EN[link]))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(re.escape(site.url(path))))
    tab_to(page, page.locator("summary").last)  # the pages' own controls show their focus too


def test_keyboard_switches_the_language(browser: Launch, site: Site) -> None:
    page = browser().page
    page.goto(site.url("/"))
    box = banner(page)
    tab_to(page, box.locator("summary"))
    page.keyboard.press("Enter")
    tab_to(page, box.locator("details a[hreflang='nl']"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(site.url("/?lang=nl"))
    expect(box).to_have_attribute("lang", "nl")
    expect(box.locator("h2")).to_have_text(NL["banner.title"])


def test_the_language_switcher_changes_the_banner_and_sticks_across_pages(
    browser: Launch, site: Site
) -> None:
    visitor = browser()
    page = visitor.page
    page.goto(site.url("/"))
    box = banner(page)
    expect(box).to_have_attribute("lang", "en")
    box.locator("summary").click()
    box.get_by_role("link", name="Nederlands").click()
    expect(page).to_have_url(site.url("/?lang=nl"))
    expect(box).to_have_attribute("lang", "nl")
    expect(box.locator("h2")).to_have_text(NL["banner.title"])
    expect(box.get_by_role("button", name=NL["banner.accept_all"])).to_be_visible()
    expect(box.locator("a[aria-current]")).to_have_attribute("hreflang", "nl")

    page.get_by_role("link", name="About").click()
    expect(page).to_have_url(site.url("/about"))
    expect(box).to_have_attribute("lang", "nl")
    box.get_by_role("link", name=NL["banner.choose"]).click()
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    expect(page.locator("h1")).to_have_text(NL["preferences.title"])
    page.goto(site.url("/_consent/cookies"))
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    assert [c["value"] for c in visitor.context.cookies() if c["name"] == "consent_lang"] == ["nl"]

    # After a choice the settings control speaks it too; another choice of language replaces it.
    page.goto(site.url("/video"))
    box.get_by_role("button", name=NL["banner.reject_all"]).click()
    expect(page.locator("#consent-settings")).to_have_text(NL["settings.label"])
    page.goto(site.url("/?lang=fr"))
    expect(page.locator("#consent-settings")).to_have_attribute("lang", "fr")
    page.goto(site.url("/contact"))
    expect(page.locator("#consent-settings")).to_have_text(load_texts("fr")["settings.label"])
