"""The consent UI markup: banner, settings control, placeholder, preferences, cookie pages (SPEC §1, §3, §6).

Run as a script (``PYTHONPATH=. python -m tests.test_render``) to rewrite the markup fixture of the
banner script's Node tests (tests/js/fixtures/markup.json) after a template or locale change.
"""

from __future__ import annotations

import gzip
import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import pytest

from consent_middleware import locales
from consent_middleware.registry import (
    CONSENT_SERVICE,
    DEFAULT_CATEGORIES,
    GOOGLE_ANALYTICS,
    YEAR,
    Category,
    Cookie,
    Registry,
    Service,
)
from consent_middleware.render import Renderer
from tests.conftest import EU_LANGUAGES

STATIC = Path(__file__).resolve().parents[1] / "static" / "banner"
JS_FIXTURE = Path(__file__).resolve().parent / "js" / "fixtures" / "markup.json"
STATIC_URLS = {
    "banner.js": "/_consent/static/banner.3f2a9c1b.js",
    "banner.css": "/_consent/static/banner.8d0e4a77.css",
}
LANGUAGES = ("en", "nl", "fr", "de")
PAYLOAD = "<script>\"'&"
ESCAPED_PAYLOAD = "&lt;script&gt;&#34;&#39;&amp;"
NONCE = "r4nd0mN0nce+/Base64=="


def make_registry(
    categories: tuple[Category, ...] = DEFAULT_CATEGORIES,
    services: tuple[Service, ...] = (GOOGLE_ANALYTICS, CONSENT_SERVICE),
) -> Registry:
    return Registry(categories=categories, services=services)


def make_renderer(
    *,
    registry: Registry | None = None,
    languages: tuple[str, ...] | list[str] = LANGUAGES,
    texts: dict[str, dict[str, str]] | None = None,
    settings_button: bool = True,
) -> Renderer:
    return Renderer(
        registry=registry or make_registry(),
        languages=languages,
        default_language="en",
        prefix="/_consent",
        static_urls=STATIC_URLS,
        texts=texts or {},
        settings_button=settings_button,
    )


class Element(NamedTuple):
    tag: str
    attrs: dict[str, str | None]


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(markup: str) -> Collector:
    collector = Collector()
    collector.feed(markup)
    collector.close()
    return collector


def visible_text(markup: str) -> str:
    return "".join(parse(markup).text)


def elements(markup: str, tag: str, **attrs: str) -> list[Element]:
    return [
        element
        for element in parse(markup).elements
        if element.tag == tag and all(element.attrs.get(name) == value for name, value in attrs.items())
    ]


def all_outputs(
    renderer: Renderer, *, nonce: str | None, next_path: str = "/", language: str = "en"
) -> list[str]:
    return [
        renderer.banner(language=language, next_path=next_path, nonce=nonce, gpc=True),
        renderer.settings_control(language=language, next_path=next_path, nonce=nonce),
        renderer.preferences_page(
            language=language, next_path=next_path, granted=frozenset(), gpc=True, nonce=nonce
        ),
        renderer.cookies_page(language=language, nonce=nonce),
        renderer.placeholder(
            language=language,
            category="analytics",
            granted=frozenset({"marketing"}),
            next_path=next_path,
            nonce=nonce,
        ),
    ]


def test_banner_is_a_labelled_non_modal_dialog() -> None:
    markup = make_renderer().banner(language="nl", next_path="/", nonce=None, gpc=False)
    (banner,) = elements(markup, "div", id="consent-banner")
    assert banner.attrs["lang"] == "nl"
    assert banner.attrs["role"] == "dialog"
    assert banner.attrs["aria-modal"] == "false"
    (heading,) = [e for e in parse(markup).elements if e.attrs.get("id") == banner.attrs["aria-labelledby"]]
    assert heading.tag == "h2"
    assert heading.attrs["tabindex"] == "-1"
    (form,) = elements(markup, "form")
    assert form.attrs == {"method": "post", "action": "/_consent"}
    assert elements(markup, "input", type="hidden", name="next", value="/")


def test_decision_buttons_are_the_same_element_and_class() -> None:
    markup = make_renderer().banner(language="en", next_path="/", nonce=None, gpc=False)
    buttons = [e for e in parse(markup).elements if e.attrs.get("name") == "decision"]
    assert [b.attrs["value"] for b in buttons] == ["accept_all", "reject_all"]
    accept, reject = buttons
    assert accept.tag == reject.tag == "button"
    assert accept.attrs["type"] == reject.attrs["type"] == "submit"
    assert accept.attrs["class"] == reject.attrs["class"]
    assert {**accept.attrs, "value": None} == {**reject.attrs, "value": None}


@pytest.mark.parametrize("gpc", [False, True])
def test_banner_has_no_checkbox(gpc: bool) -> None:
    markup = make_renderer().banner(language="en", next_path="/", nonce=None, gpc=gpc)
    assert not elements(markup, "input", type="checkbox")
    assert "checked" not in markup


def test_gpc_line_only_with_gpc() -> None:
    renderer = make_renderer()
    line = renderer.text("en", "banner.gpc")
    assert "Global Privacy Control" in line
    assert line in visible_text(renderer.banner(language="en", next_path="/", nonce=None, gpc=True))
    assert "Global Privacy Control" not in renderer.banner(
        language="en", next_path="/", nonce=None, gpc=False
    )


def checked_boxes(markup: str) -> set[str | None]:
    return {
        box.attrs["value"] for box in elements(markup, "input", type="checkbox") if "checked" in box.attrs
    }


def test_preferences_page_ticks_nothing_for_an_undecided_visitor() -> None:
    markup = make_renderer().preferences_page(
        language="en", next_path="/", granted=frozenset(), gpc=False, nonce=None
    )
    boxes = elements(markup, "input", type="checkbox", name="categories")
    assert [box.attrs["value"] for box in boxes] == ["preferences", "analytics", "marketing"]
    assert checked_boxes(markup) == set()


def test_preferences_page_ticks_exactly_the_granted_categories() -> None:
    markup = make_renderer().preferences_page(
        language="en", next_path="/", granted=frozenset({"necessary", "analytics"}), gpc=False, nonce=None
    )
    assert checked_boxes(markup) == {"analytics"}


def test_preferences_page_is_a_working_form() -> None:
    markup = make_renderer().preferences_page(
        language="nl", next_path="/contact", granted=frozenset(), gpc=False, nonce=None
    )
    assert markup.startswith('<!doctype html>\n<html lang="nl">')
    assert elements(markup, "meta", name="viewport")
    (form,) = elements(markup, "form")
    assert form.attrs == {"method": "post", "action": "/_consent"}
    assert elements(markup, "input", type="hidden", name="next", value="/contact")
    buttons = [e for e in parse(markup).elements if e.attrs.get("name") == "decision"]
    assert [b.attrs["value"] for b in buttons] == ["custom", "accept_all", "reject_all"]
    assert len({(b.tag, b.attrs["type"], b.attrs["class"]) for b in buttons}) == 1
    assert elements(markup, "a", href="/contact")  # back to where the visitor came from
    assert elements(markup, "a", href="/_consent/cookies")


def test_necessary_is_always_on_text_not_a_checkbox() -> None:
    renderer = make_renderer()
    for granted in (frozenset(), frozenset({"necessary"})):
        markup = renderer.preferences_page(
            language="nl", next_path="/", granted=granted, gpc=False, nonce=None
        )
        assert not [
            e for e in parse(markup).elements if e.tag == "input" and e.attrs.get("value") == "necessary"
        ]
        assert "Altijd aan" in markup


def test_every_language_is_offered_in_its_own_name() -> None:
    renderer = make_renderer()
    own_names = {"en": "English", "nl": "Nederlands", "fr": "Français", "de": "Deutsch"}
    banner, _, preferences, cookies, _ = all_outputs(renderer, nonce=None, language="nl")
    for markup in (banner, preferences, cookies):
        links = [e for e in parse(markup).elements if e.tag == "a" and "hreflang" in e.attrs]
        assert [link.attrs["hreflang"] for link in links] == list(LANGUAGES)
        for link in links:
            code = link.attrs["hreflang"]
            assert code is not None
            assert link.attrs["lang"] == code
            assert parse_qs(urlsplit(link.attrs["href"] or "").query)["lang"] == [code]
            assert f'lang="{code}"' in markup
            assert f">{own_names[code]}</a>" in markup
        assert [link.attrs["hreflang"] for link in links if "aria-current" in link.attrs] == ["nl"]


def test_language_names_come_from_locale_files_then_cldr() -> None:
    assert locales.language_name("nl") == "Nederlands"
    assert locales.language_name("en") == "English"
    assert locales.language_name("pl") == "Polski"
    assert locales.language_name("not a language") == "not a language"


def test_operator_text_overrides_win() -> None:
    renderer = make_renderer(texts={"nl": {"banner.title": "Wij bakken koekjes", "language.name": "Vlaams"}})
    assert renderer.text("nl", "banner.title") == "Wij bakken koekjes"
    assert renderer.text("en", "banner.title") == locales.load_texts("en")["banner.title"]
    assert "Wij bakken koekjes" in renderer.banner(language="nl", next_path="/", nonce=None, gpc=False)
    assert "Wij bakken koekjes" not in renderer.banner(language="en", next_path="/", nonce=None, gpc=False)
    assert ">Vlaams</a>" in renderer.banner(language="en", next_path="/", nonce=None, gpc=False)


def test_text_falls_back_to_english_then_the_key() -> None:
    renderer = make_renderer(texts={"en": {"custom.key": "Custom"}})
    assert renderer.text("nl", "custom.key") == "Custom"
    assert renderer.text("nb", "banner.accept_all") == locales.load_texts("en")["banner.accept_all"]
    assert renderer.text("nl", "no.such.key") == "no.such.key"


def test_registry_texts_win_over_locale_keys_then_the_name() -> None:
    registry = make_registry(
        categories=(*DEFAULT_CATEGORIES, Category("functional")),
        services=(
            Service(
                name="chat",
                category="functional",
                label={"nl": "Chatvenster", "en": "Chat window"},
                cookies=(Cookie("chat_id", purpose="Keeps the chat open."),),
            ),
            Service(name="maps", category="analytics", label="Maps", cookies=(Cookie("m"),)),
        ),
    )
    page = make_renderer(registry=registry).cookies_page(language="nl", nonce=None)
    assert "<h2>functional</h2>" in page
    assert "<h3>Chatvenster</h3>" in page
    assert "Keeps the chat open." in page
    assert "<h3>Maps</h3>" in page
    assert "<h2>Statistieken</h2>" in page


def assert_no_raw_payload(markup: str) -> None:
    assert PAYLOAD not in markup
    assert "<script>" not in markup
    scripts = elements(markup, "script")
    assert all(script.attrs.get("src") == STATIC_URLS["banner.js"] for script in scripts)


def test_operator_text_is_escaped() -> None:
    texts = dict.fromkeys(locales.load_texts("en"), PAYLOAD)
    renderer = make_renderer(texts={"en": texts})
    for markup in all_outputs(renderer, nonce=None):
        assert_no_raw_payload(markup)
        assert ESCAPED_PAYLOAD in markup


def test_registry_labels_are_escaped() -> None:
    registry = make_registry(
        categories=(Category("necessary"), Category("analytics", label=PAYLOAD, description=PAYLOAD)),
        services=(
            Service(
                name="evil",
                category="analytics",
                label=PAYLOAD,
                purpose=PAYLOAD,
                provider=PAYLOAD,
                cookies=(Cookie("ev", provider=PAYLOAD, purpose=PAYLOAD),),
            ),
        ),
    )
    renderer = make_renderer(registry=registry)
    for markup in all_outputs(renderer, nonce=None)[2:]:
        assert_no_raw_payload(markup)
        assert ESCAPED_PAYLOAD in markup


@pytest.mark.parametrize(
    "next_path", [PAYLOAD, f"/search?q={PAYLOAD}&page=2#x", '/"><script>alert(1)</script>']
)
def test_next_path_is_escaped(next_path: str) -> None:
    renderer = make_renderer()
    for markup in all_outputs(renderer, nonce=None, next_path=next_path):
        assert_no_raw_payload(markup)
    banner = renderer.banner(language="en", next_path=next_path, nonce=None, gpc=False)
    assert elements(banner, "input", type="hidden", name="next", value=next_path)
    (link,) = [e for e in elements(banner, "a") if "/preferences" in (e.attrs.get("href") or "")]
    href = urlsplit(link.attrs["href"] or "")
    assert href.path == "/_consent/preferences"
    assert parse_qs(href.query) == {"next": [next_path]}


def back_link(page: str) -> str | None:
    back_text = locales.load_texts("en")["preferences.back"]
    match = re.search(rf'<a href="([^"]*)">{re.escape(back_text)}</a>', page)
    assert match is not None
    return html.unescape(match.group(1))


@pytest.mark.parametrize(
    "next_path", ["//evil.example/", "javascript:alert(1)", "/\t/evil.example", "/\\evil"]
)
def test_back_link_stays_on_the_site(next_path: str) -> None:
    page = make_renderer().preferences_page(
        language="en", next_path=next_path, granted=frozenset(), gpc=False, nonce=None
    )
    assert back_link(page) == "/"


def nonce_bearers(markup: str) -> list[Element]:
    return [
        e
        for e in parse(markup).elements
        if e.tag in {"script", "style"} or (e.tag == "link" and e.attrs.get("rel") == "stylesheet")
    ]


def test_nonce_is_on_every_script_style_and_stylesheet() -> None:
    for markup in all_outputs(make_renderer(), nonce=NONCE):
        bearers = nonce_bearers(markup)
        assert bearers
        assert all(e.attrs.get("nonce") == NONCE for e in bearers)
    banner = make_renderer().banner(language="en", next_path="/", nonce=NONCE, gpc=False)
    assert {e.tag for e in nonce_bearers(banner)} == {"link", "script"}


def test_no_nonce_attribute_without_a_nonce() -> None:
    for markup in all_outputs(make_renderer(), nonce=None):
        assert nonce_bearers(markup)
        assert "nonce" not in markup


def test_nonce_is_escaped() -> None:
    markup = make_renderer().banner(language="en", next_path="/", nonce='"><script>', gpc=False)
    assert_no_raw_payload(markup)
    assert all(e.attrs.get("nonce") == '"><script>' for e in nonce_bearers(markup))


@pytest.mark.parametrize("language", ["en", "nl"])
def test_banner_stays_under_4_kb_with_24_languages(language: str) -> None:
    renderer = make_renderer(languages=EU_LANGUAGES)
    markup = renderer.banner(language=language, next_path="/products/page?id=12", nonce=NONCE, gpc=True)
    assert len(elements(markup, "a", hreflang="bg")) == 1
    assert len([e for e in parse(markup).elements if "hreflang" in e.attrs]) == 24
    assert len(markup.encode()) < 4096


def test_output_is_deterministic() -> None:
    first, second = make_renderer(), make_renderer()
    for language in LANGUAGES:
        expected = all_outputs(first, nonce=NONCE, next_path="/a?b=1", language=language)
        assert all_outputs(second, nonce=NONCE, next_path="/a?b=1", language=language) == expected
        all_outputs(first, nonce="other", next_path="/elsewhere", language=language)  # fills the caches
        assert all_outputs(first, nonce=NONCE, next_path="/a?b=1", language=language) == expected


def test_unknown_language_renders_the_default() -> None:
    renderer = make_renderer()
    english = renderer.banner(language="en", next_path="/", nonce=None, gpc=False)
    assert renderer.banner(language="xx", next_path="/", nonce=None, gpc=False) == english


def test_language_without_locale_file_reads_in_english() -> None:
    missing = next(code for code in ("nb", "is", "tr") if code not in locales.AVAILABLE_LANGUAGES)
    renderer = make_renderer(languages=("en", missing))
    markup = renderer.banner(language=missing, next_path="/", nonce=None, gpc=False)
    (banner,) = elements(markup, "div", id="consent-banner")
    assert banner.attrs["lang"] == "en"  # the language the text is really in
    assert locales.load_texts(missing) == locales.load_texts("en")


def test_dutch_banner_has_no_english_ui_strings() -> None:
    english = locales.file_texts("en")
    markup = make_renderer().banner(language="nl", next_path="/", nonce=None, gpc=True)
    text = (
        visible_text(markup)
        + " "
        + " ".join(str(e.attrs.get("data-settings")) for e in parse(markup).elements)
    )
    shown = {key: value for key, value in english.items() if key.startswith(("banner.", "settings."))}
    assert len(shown) >= 9
    for key, value in shown.items():
        assert value not in text, key
    assert "Alles aanvaarden" in text
    assert "Alles weigeren" in text
    assert "Cookie-instellingen" in text


def test_every_locale_file_has_every_english_key() -> None:
    assert {"en", "nl"} <= set(locales.AVAILABLE_LANGUAGES)
    assert list(locales.AVAILABLE_LANGUAGES) == sorted(locales.AVAILABLE_LANGUAGES)
    english = locales.file_texts("en")
    for code in locales.AVAILABLE_LANGUAGES:
        texts = locales.file_texts(code)
        assert set(texts) == set(english), code
        assert all(value.strip() for value in texts.values()), code
        if code != "en":
            assert texts["language.name"] != english["language.name"]


def test_locale_keys_cover_the_default_registry() -> None:
    english = locales.file_texts("en")
    for category in DEFAULT_CATEGORIES:
        assert f"category.{category.name}.label" in english
        assert f"category.{category.name}.description" in english
    for service in (GOOGLE_ANALYTICS, CONSENT_SERVICE):
        assert f"service.{service.name}.label" in english
        assert f"service.{service.name}.purpose" in english
    assert "cookie.consent.purpose" in english
    assert "cookie.consent_lang.purpose" in english


def cookie_rows(page: str) -> dict[str, tuple[str, str, str]]:
    rows = re.findall(
        r'<tr><th scope="row"><code>([^<]*)</code></th><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>',
        page,
    )
    unescape = html.unescape
    return {
        unescape(name): (unescape(provider), unescape(purpose), unescape(duration))
        for name, provider, purpose, duration in rows
    }


def test_cookie_page_lists_every_cookie_with_its_duration() -> None:
    renderer = make_renderer()
    rows = cookie_rows(renderer.cookies_page(language="en", nonce=None))
    assert {"_ga", "_ga_*", "_gid", "consent", "consent_lang"} <= set(rows)
    assert rows["_ga"] == ("Google", "Tells visitors apart.", "2 years")
    assert rows["_ga_*"][2] == "2 years"
    assert rows["_gid"][2] == "1 day"
    assert rows["consent_lang"] == ("This website", "Stores your language choice.", "1 year")
    assert rows["consent"][1] == "Stores your consent choice."
    assert rows["consent"][2] == "6 months"  # CONSENT_SERVICE: the default consent_max_age of 182 days
    dutch = cookie_rows(renderer.cookies_page(language="nl", nonce=None))
    assert dutch["_ga"][2] == "2 jaar"
    assert dutch["consent_lang"] == ("Deze website", "Bewaart uw taalkeuze.", "1 jaar")


def test_cookie_durations_are_not_rounded_up_or_down_by_much() -> None:
    service = Service(
        name="site",
        category="necessary",
        cookies=(
            Cookie("a", max_age=395 * 24 * 3600),
            Cookie("b", max_age=182 * 24 * 3600),
            Cookie("c", max_age=YEAR),
        ),
    )
    rows = cookie_rows(
        make_renderer(registry=make_registry(services=(service,))).cookies_page(language="en", nonce=None)
    )
    assert [rows[name][2] for name in "abc"] == ["13 months", "6 months", "1 year"]


def test_settings_control_is_a_real_link() -> None:
    markup = make_renderer().settings_control(language="nl", next_path="/a b", nonce=None)
    (link,) = elements(markup, "a", id="consent-settings")
    assert link.attrs["href"] == "/_consent/preferences?next=/a%20b"
    assert ">Cookie-instellingen</a>" in markup
    assert elements(markup, "script", type="module", src=STATIC_URLS["banner.js"])
    assert elements(markup, "link", rel="stylesheet", href=STATIC_URLS["banner.css"])


def test_settings_control_can_be_turned_off() -> None:
    renderer = make_renderer(settings_button=False)
    assert renderer.settings_control(language="en", next_path="/", nonce=NONCE) == ""
    assert "data-settings" not in renderer.banner(language="en", next_path="/", nonce=None, gpc=False)


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="default_language"):
        Renderer(
            registry=make_registry(),
            languages=["nl"],
            default_language="en",
            prefix="/_consent",
            static_urls=STATIC_URLS,
        )
    with pytest.raises(ValueError, match=r"banner\.js"):
        Renderer(
            registry=make_registry(),
            languages=["en"],
            default_language="en",
            prefix="/_consent",
            static_urls={"banner.css": "/x.css"},
        )


def test_assets_fit_in_4_kb_gzipped() -> None:
    js = (STATIC / "banner.js").read_bytes()
    css = (STATIC / "banner.css").read_bytes()
    assert len(gzip.compress(js)) + len(gzip.compress(css)) <= 4096


def test_stylesheet_is_scoped_to_the_consent_ui() -> None:
    css = re.sub(r"/\*.*?\*/", "", (STATIC / "banner.css").read_text(), flags=re.S)
    selectors = re.findall(r"([^{};]+)\{", css)
    scopes = ("#consent-banner", "#consent-settings", ".consent-placeholder", ".consent-page")
    for group in selectors:
        group = re.sub(r"^:where\((.*)\)$", r"\1", group.strip())
        if group.startswith("@") or group in {"from", "to"}:
            continue
        for selector in group.split(","):
            assert selector.strip().startswith(scopes), selector
    assert "prefers-color-scheme:dark" in css
    assert "prefers-reduced-motion" in css
    assert ":focus-visible" in css


def test_banner_script_is_an_es_module_that_posts_json() -> None:
    js = (STATIC / "banner.js").read_text()
    assert 'credentials: "same-origin"' in js
    assert "application/json" in js
    assert "form.submit()" in js  # the fallback
    assert "import " not in js  # no dependencies


# -- placeholder of a gated iframe -------------------------------------------------------------


def placeholder(
    renderer: Renderer | None = None,
    *,
    language: str = "en",
    category: str = "marketing",
    granted: frozenset[str] = frozenset(),
    next_path: str = "/",
    nonce: str | None = None,
    reload: bool = False,
) -> str:
    return (renderer or make_renderer()).placeholder(
        language=language,
        category=category,
        granted=granted,
        next_path=next_path,
        nonce=nonce,
        reload=reload,
    )


def test_placeholder_is_a_form_that_works_without_javascript() -> None:
    markup = placeholder(next_path="/video")
    assert markup.startswith(
        '<div class="consent-placeholder" data-consent-placeholder="marketing" lang="en">'
    )
    assert markup.endswith("</div>")
    (form,) = elements(markup, "form")
    assert form.attrs == {"method": "post", "action": "/_consent"}
    inputs = elements(markup, "input")
    assert [(i.attrs["type"], i.attrs["name"], i.attrs["value"]) for i in inputs] == [
        ("hidden", "decision", "custom"),
        ("hidden", "next", "/video"),
    ]
    (button,) = elements(markup, "button")
    assert button.attrs == {
        "type": "submit",
        "name": "categories",
        "value": "marketing",
        "class": "consent-btn",
    }
    # The button is inside the form, so a click posts decision=custom&next=/video&categories=marketing.
    assert markup.index("<form") < markup.index("<button") < markup.index("</form>")
    assert "This content uses “Marketing” cookies" in visible_text(markup)
    assert "Allow “Marketing” cookies" in visible_text(markup)


def test_placeholder_keeps_the_categories_already_granted() -> None:
    granted = frozenset({"necessary", "marketing", "preferences", "analytics", "unknown"})
    markup = placeholder(category="marketing", granted=granted)
    kept = [i.attrs["value"] for i in elements(markup, "input", type="hidden", name="categories")]
    assert kept == ["preferences", "analytics"]  # optional ones, registry order, not the category itself
    (button,) = elements(markup, "button", name="categories")
    assert button.attrs["value"] == "marketing"


def test_placeholder_in_dutch() -> None:
    markup = placeholder(language="nl", category="analytics")
    (box,) = elements(markup, "div", **{"class": "consent-placeholder"})
    assert box.attrs["lang"] == "nl"
    text = visible_text(markup)
    assert "Deze inhoud gebruikt cookies voor \u2018Statistieken\u2019" in text
    assert "Cookies voor \u2018Statistieken\u2019 toestaan" in text
    for key in ("placeholder.text", "placeholder.allow"):
        english = locales.file_texts("en")[key].partition("{category}")
        assert english[0] not in text
        assert english[2] not in text


def test_placeholder_label_comes_from_the_registry_then_the_name() -> None:
    registry = make_registry(
        categories=(*DEFAULT_CATEGORIES, Category("video", label={"en": "Video", "nl": "Video's"}))
    )
    renderer = make_renderer(registry=registry)
    assert "Allow “Video” cookies" in placeholder(renderer, category="video")
    assert "Cookies voor \u2018Video&#39;s\u2019 toestaan" in placeholder(
        renderer, language="nl", category="video"
    )
    assert "Allow “maps” cookies" in placeholder(renderer, category="maps")


def test_placeholder_escapes_everything() -> None:
    registry = make_registry(categories=(Category("necessary"), Category("ads", label=PAYLOAD)), services=())
    renderer = make_renderer(
        registry=registry,
        texts={"en": {"placeholder.text": PAYLOAD + " {category}", "placeholder.allow": "{category} {x}"}},
    )
    markup = placeholder(renderer, category="ads", next_path=PAYLOAD, nonce=PAYLOAD)
    assert_no_raw_payload(markup)
    assert markup.count(ESCAPED_PAYLOAD) == 6  # text x2, button, next, nonce x2
    assert f">{ESCAPED_PAYLOAD} {{x}}</button>" in markup  # other braces are left alone
    assert elements(markup, "input", name="next", value=PAYLOAD)
    hostile = placeholder(renderer, category='x"><script>', granted=frozenset({"ads"}))
    assert "<script>" not in hostile
    (button,) = elements(hostile, "button")
    assert button.attrs["value"] == 'x"><script>'
    assert [
        (e.tag, e.attrs.get("value")) for e in parse(hostile).elements if e.attrs.get("name") == "categories"
    ] == [
        ("input", "ads"),
        ("button", 'x"><script>'),
    ]


def test_placeholder_brings_the_stylesheet_and_script_with_the_nonce() -> None:
    markup = placeholder(nonce=NONCE)
    assert {e.tag for e in nonce_bearers(markup)} == {"link", "script"}
    assert all(e.attrs.get("nonce") == NONCE for e in nonce_bearers(markup))
    assert elements(markup, "script", type="module", src=STATIC_URLS["banner.js"])
    assert elements(markup, "link", rel="stylesheet", href=STATIC_URLS["banner.css"])
    assert "nonce" not in placeholder(nonce=None)


def test_placeholder_is_deterministic_and_cached_per_call_values() -> None:
    renderer = make_renderer()
    first = placeholder(renderer, next_path="/a", nonce="one", granted=frozenset({"analytics"}))
    assert (
        placeholder(make_renderer(), next_path="/a", nonce="one", granted=frozenset({"analytics"})) == first
    )
    other = placeholder(renderer, next_path="/b", nonce="two", granted=frozenset({"analytics"}))
    assert other == first.replace('value="/a"', 'value="/b"').replace('"one"', '"two"')
    assert placeholder(renderer, next_path="/a", nonce="one", granted=frozenset({"analytics"})) == first


@pytest.mark.parametrize("reload", [False, True])
def test_reload_marks_banner_settings_and_placeholder(reload: bool) -> None:
    renderer = make_renderer()
    outputs = {
        "div": renderer.banner(language="en", next_path="/", nonce=None, gpc=False, reload=reload),
        "a": renderer.settings_control(language="en", next_path="/", nonce=None, reload=reload),
    }
    outputs["div "] = placeholder(renderer, reload=reload)
    for tag, markup in outputs.items():
        marked = [e for e in parse(markup).elements if "data-consent-reload" in e.attrs]
        assert [e.tag for e in marked] == ([tag.strip()] if reload else []), tag
        if reload:
            assert marked[0].attrs["data-consent-reload"] is None  # a bare boolean attribute
    default = renderer.banner(language="en", next_path="/", nonce=None, gpc=False)
    assert "data-consent-reload" not in default + renderer.settings_control(
        language="en", next_path="/", nonce=None
    )


def test_reload_banner_stays_under_4_kb_with_24_languages() -> None:
    renderer = make_renderer(languages=EU_LANGUAGES)
    markup = renderer.banner(
        language="nl", next_path="/products/page?id=12", nonce=NONCE, gpc=True, reload=True
    )
    assert len(markup.encode()) < 4096


def test_placeholder_texts_have_the_category_slot_in_every_locale() -> None:
    for code in locales.AVAILABLE_LANGUAGES:
        texts = locales.file_texts(code)
        for key in ("placeholder.text", "placeholder.allow"):
            assert texts[key].count("{category}") == 1, (code, key)


def test_stylesheet_hides_the_iframe_behind_its_placeholder() -> None:
    css = (STATIC / "banner.css").read_text()
    assert ".consent-placeholder+iframe[data-consent]{display:none}" in css


# -- the markup the Node tests of banner.js load (tests/js/) -----------------------------------


def js_fixtures() -> dict[str, str]:
    renderer = make_renderer()
    return {
        "banner": renderer.banner(language="en", next_path="/page", nonce=None, gpc=False),
        "banner_reload": renderer.banner(
            language="en", next_path="/page", nonce=None, gpc=False, reload=True
        ),
        "settings": renderer.settings_control(language="en", next_path="/page", nonce=None),
        "placeholder_marketing": renderer.placeholder(
            language="en", category="marketing", granted=frozenset(), next_path="/page", nonce=None
        ),
        "placeholder_marketing_after_analytics": renderer.placeholder(
            language="en",
            category="marketing",
            granted=frozenset({"analytics"}),
            next_path="/page",
            nonce=None,
        ),
    }


def js_fixture_text() -> str:
    return json.dumps(js_fixtures(), indent=2, ensure_ascii=False) + "\n"


def test_js_fixture_is_current() -> None:
    assert JS_FIXTURE.read_text(encoding="utf-8") == js_fixture_text(), (
        "rewrite it: PYTHONPATH=. python -m tests.test_render"
    )


if __name__ == "__main__":
    JS_FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    JS_FIXTURE.write_text(js_fixture_text(), encoding="utf-8")
    print(f"wrote {JS_FIXTURE}")
