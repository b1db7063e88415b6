"""axe-core (from npm, pinned in package.json) finds no violation on the banner, the preferences
page, the cookie page and a video's placeholder, in every shipped language, in light and dark mode,
with every ``<details>`` open (the language list, the services) so that all of it is checked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Playwright, expect

from consent_middleware.locales import AVAILABLE_LANGUAGES
from tests.e2e.conftest import AXE, Browser, Site, start_browser, unavailable
from tests.e2e.tracker import StandIn

#: The WCAG 2.2 A and AA rules and axe's best practices (every rule axe runs by default).
RUN_OPTIONS = {"resultTypes": ["violations"]}
#: What is checked: a page, and the part of it that is the middleware's (``None``: all of it).
PAGES = {
    "banner": ("/", "#consent-banner"),
    "preferences": ("/_consent/preferences", None),
    "cookies": ("/_consent/cookies", None),
    "placeholder": ("/video", ".consent-placeholder"),
}
AXE_RUN = """async ([selector, options]) => {
    const results = await axe.run(selector ? { include: [[selector]] } : document, options);
    return results.violations.map((violation) => ({
        rule: violation.id,
        impact: violation.impact,
        help: violation.help,
        nodes: violation.nodes.map((node) => node.target.join(" ") + ": " + node.failureSummary),
    }));
}"""


@pytest.fixture(scope="module")
def axe_browser(
    playwright: Playwright,
    chromium: Path,
    site: Site,
    tracker: StandIn,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Browser]:
    """One browser for the whole module; ``bypass_csp`` lets axe's script into the consent pages,
    whose strict policy admits only the middleware's own files."""
    if not AXE.exists():
        unavailable(f"axe-core is missing ({AXE}): run `npm ci` in the repository")
    instance = start_browser(
        playwright,
        chromium,
        site,
        tracker,
        tmp_path_factory.mktemp("axe"),
        bypass_csp=True,
        reduced_motion="reduce",
    )
    yield instance
    instance.close()


def violations(page: Page, selector: str | None) -> list[dict[str, Any]]:
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=AXE)
    found: list[dict[str, Any]] = page.evaluate(AXE_RUN, [selector, RUN_OPTIONS])
    return found


def report(found: list[dict[str, Any]]) -> str:
    lines = []
    for violation in found:
        lines.append(f"{violation['rule']} ({violation['impact']}): {violation['help']}")
        lines += [f"    {node}" for node in violation["nodes"][:5]]
    return "\n".join(lines)


@pytest.mark.parametrize("language", AVAILABLE_LANGUAGES)
def test_no_axe_violations(axe_browser: Browser, site: Site, language: str) -> None:
    page = axe_browser.page
    axe_browser.context.clear_cookies()  # undecided, so that the banner shows
    problems = []
    for name, (path, selector) in PAGES.items():
        page.goto(site.url(f"{path}?lang={language}"))
        expect(page.locator(selector or "html")).to_have_attribute("lang", language)
        page.evaluate(
            "() => document.querySelectorAll('details').forEach((details) => { details.open = true; })"
        )
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            found = violations(page, selector)
            if found:
                problems.append(f"{name} page, {scheme}, ?lang={language}:\n{report(found)}")
    assert not problems, "\n\n".join(problems)
