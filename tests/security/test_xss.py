"""Cross-site scripting through every text and option that reaches HTML (SECURITY.md §6).

Hostile values go in through the operator's options (``texts``, category, service and cookie texts,
privacy policy URLs), the visitor's request (``lang``, ``next``, the path and query, headers) and
the shipped translations; the banner, the settings control, the iframe placeholder, the preferences
page, the cookie declaration and the error messages are then parsed: no element, attribute, event
handler, script or URL scheme the templates do not make themselves, and the payload shown as text.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from consent_middleware import Category, ConsentMiddleware, Cookie, Service, locales
from tests.conftest import EU_LANGUAGES, SECRET, body_of, drive, http_scope
from tests.security.helpers import SAME_ORIGIN, VISITOR, YOUTUBE, middleware

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "javascript:alert(1)",
    "</textarea></title></style><script>alert(1)</script>",
    "<!--<script>alert(1)//-->",
    "<a href=javascript:alert(1)>x</a>",
    "{{ 7*7 }}{% raw %}",
    "\x00N\x00\x00C\x00",  # the renderer's own slot markers: never spliced from a text
    "{category}<iframe srcdoc=x>",
]
#: Tags the templates and the probe page make; anything else in a page is injected markup.
OWN_TAGS = frozenset(
    {
        *("html", "head", "meta", "title", "link", "body", "main", "nav", "section", "div", "p", "span"),
        *("h1", "h2", "h3", "form", "input", "button", "label", "a", "details", "summary", "strong"),
        *("ul", "li", "dl", "dt", "dd", "table", "thead", "tbody", "tr", "th", "td", "code", "small"),
        *("script", "iframe"),
    }
)
URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "srcdoc", "data", "xlink:href"})


class Audit(HTMLParser):
    """Collects every start tag and whatever in it could run script."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.texts: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag not in OWN_TAGS:
            self.problems.append(f"injected <{tag}>")
        for name, value in attrs:
            self.attributes.append((tag, name, value or ""))
            if name.startswith("on"):
                self.problems.append(f"event handler {name} on <{tag}>")
            if name in URL_ATTRIBUTES and (value or "").strip().lower().startswith(
                ("javascript:", "data:", "vbscript:")
            ):
                self.problems.append(f"script URL in {tag}[{name}]: {value}")
        if tag == "script":
            self._in_script = found
            src = found.get("src") or ""
            gated = found.get("type") == "text/plain" and "data-consent" in found
            ours = found.get("type") == "module" and src.startswith("/_consent/static/banner.")
            if not (gated or ours or (not src and not found.get("type"))):
                self.problems.append(f"unexpected script {found}")
        if tag == "iframe" and "src" in found:
            self.problems.append("live iframe")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        if self._in_script is not None and not self._in_script.get("src"):
            if not data.startswith("window.dataLayer=window.dataLayer||[];") or "alert" in data:
                self.problems.append(f"inline script {data[:60]!r}")
        else:
            self.texts.append(data)


def audit(page: str) -> Audit:
    checker = Audit()
    checker.feed(page)
    checker.close()
    assert checker.problems == [], checker.problems
    for marker in ("<script>alert", "<img src=x", "<svg", "<iframe srcdoc", "<a href=javascript"):
        assert marker not in page
    return checker


def header(payload: str) -> str:
    """The payload as an HTTP client can send it in a header (no NUL)."""
    return payload.replace("\x00", "")


def pages(visitor: TestClient, language: str = "en") -> dict[str, str]:
    """The banner and placeholder (on the probe page), preferences, cookies, and the settings
    control (after a decision), in ``language``."""
    query = {"lang": language}
    found = {
        "banner": visitor.get("/", params=query).text,
        "preferences": visitor.get("/_consent/preferences", params=query).text,
        "cookies": visitor.get("/_consent/cookies", params=query).text,
    }
    visitor.post("/_consent", json={"decision": "reject_all"}, headers=SAME_ORIGIN)
    found["settings"] = visitor.get("/", params=query).text
    visitor.cookies.clear()
    return found


def hostile_visitor(payload: str, **options: Any) -> TestClient:
    texts = dict.fromkeys(locales.load_texts("en"), payload)
    texts["placeholder.text"] = payload + " {category}"
    category = Category(
        "marketing", label={"en": payload, "nl": payload}, description={"en": payload, "nl": payload}
    )
    service = Service(
        name="youtube",
        category="marketing",
        hosts=YOUTUBE.hosts,
        label=payload,
        purpose={"en": payload, "nl": payload},
        provider=payload,
        privacy_policy="https://evil.example/" + payload,
        cookies=(Cookie("VISITOR_INFO1_LIVE", provider=payload, purpose=payload, max_age=3600),),
    )
    options.setdefault("texts", {"en": texts, "nl": texts})
    app = middleware(
        categories=[category], services=["google-analytics", service], languages=["en", "nl"], **options
    )
    return TestClient(app, client=VISITOR)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("language", ["en", "nl"])
def test_operator_texts_and_registry_texts_are_escaped_everywhere(payload: str, language: str) -> None:
    # Shown as text, exactly (a NUL becomes U+FFFD): not run, not a template, not a slot.
    shown = str(escape(payload.replace("\x00", "\ufffd")))
    for name, page in pages(hostile_visitor(payload), language).items():
        audit(page)
        assert shown in page, name


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_placeholder_escapes_the_category_label_and_texts(payload: str) -> None:
    page = hostile_visitor(payload).get("/").text
    placeholder = page.partition('<div class="consent-placeholder"')[2].partition("</div>")[0]
    assert placeholder
    audit('<div class="consent-placeholder"' + placeholder + "</div>")
    assert str(escape(payload.replace("\x00", "\ufffd"))) in placeholder


@pytest.mark.parametrize("payload", PAYLOADS)
def test_privacy_policy_url_is_an_escaped_https_link(payload: str) -> None:
    page = hostile_visitor(payload).get("/_consent/cookies").text
    checker = audit(page)
    url = "https://evil.example/" + payload.replace("\x00", "\ufffd")
    assert ("a", "href", url) in checker.attributes


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "data:text/html,<script>alert(1)</script>", " javascript:alert(1)", "//x"]
)
def test_privacy_policy_must_be_an_https_url(url: str) -> None:
    with pytest.raises(ValueError, match="privacy_policy"):
        Service(name="x", category="marketing", privacy_policy=url)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_names_that_reach_ids_and_attributes_are_refused(payload: str) -> None:
    with pytest.raises(ValueError, match="category name"):
        Category(payload)
    with pytest.raises(ValueError, match="service name"):
        Service(name=payload, category="marketing")
    with pytest.raises(ValueError, match="cookie name"):
        Cookie(payload)
    with pytest.raises(ValueError, match="category"):
        Service(name="x", category=payload)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_language_names_in_the_switcher_are_escaped(payload: str) -> None:
    visitor = TestClient(
        middleware(languages=["en", "nl"], texts={"nl": {"language.name": payload}}), client=VISITOR
    )
    for page in pages(visitor).values():
        audit(page)


@pytest.mark.parametrize("language", EU_LANGUAGES)
def test_every_shipped_translation_renders_clean_markup(language: str) -> None:
    for page in pages(TestClient(middleware(), client=VISITOR), language).values():
        audit(page)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_lang_and_accept_language_are_never_echoed(payload: str) -> None:
    visitor = TestClient(middleware(), client=VISITOR)
    for path in ("/", "/_consent/preferences", "/_consent/cookies"):
        page = visitor.get(path, params={"lang": payload}, headers={"Accept-Language": header(payload)})
        audit(page.text)
        assert '<html lang="en">' in page.text or 'lang="en" role="dialog"' in page.text


@pytest.mark.parametrize("payload", PAYLOADS)
def test_next_is_escaped_on_the_preferences_page(payload: str) -> None:
    for value in (payload, "/" + payload, "/search?q=" + payload):
        page = TestClient(middleware(), client=VISITOR).get("/_consent/preferences", params={"next": value})
        checker = audit(page.text)
        hidden = [v for tag, name, v in checker.attributes if tag == "input" and name == "value"]
        assert hidden[0] in (value.replace("\x00", "\ufffd"), "/")


@pytest.mark.parametrize(
    ("raw_path", "query"),
    [
        (b'/"><svg/onload=alert(1)>', b""),
        (b"/a", b'q="><script>alert(1)</script>'),
        (b"/a", b"q='><img src=x onerror=alert(1)>"),
        (b"/javascript:alert(1)", b""),
        (b"/%22%3E%3Cscript%3Ealert(1)%3C/script%3E", b"x=%3Cscript%3E"),
        (b"/\xff\xfe<script>", b"\xff<script>"),
    ],
)
@pytest.mark.anyio
async def test_the_current_path_is_escaped_in_the_banner_placeholder_and_settings(
    raw_path: bytes, query: bytes
) -> None:
    """The page's own address goes into the banner's and placeholder's ``next`` and links."""
    decided = (
        b"consent="
        + TestClient(middleware(consent_log=None))
        .post("/_consent", json={"decision": "reject_all"}, headers=SAME_ORIGIN)
        .cookies["consent"]
        .encode()
    )
    for cookies in ([], [(b"cookie", decided)]):
        scope = http_scope(raw_path.decode("latin-1"), headers=cookies, raw_path=raw_path, query_string=query)
        page = body_of(await drive(middleware(), scope)).decode("utf-8")
        audit(page)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_error_messages_are_plain_text_and_escaped(payload: str) -> None:
    visitor = TestClient(middleware(), client=VISITOR)
    for response in (
        visitor.post("/_consent", data={"decision": payload}, headers=SAME_ORIGIN),
        visitor.post("/_consent", data={"decision": "custom", "categories": payload}, headers=SAME_ORIGIN),
        visitor.post("/_consent", data={"decision": "accept_all"}, headers={"Origin": header(payload)}),
        visitor.post(
            "/_consent", data={"decision": "accept_all"}, headers={"Referer": "http://e/" + header(payload)}
        ),
    ):
        assert response.status_code in (400, 403)
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["x-content-type-options"] == "nosniff"
        for markup in ("<script>", "<img", "<svg", "<iframe"):
            assert markup not in response.text
    json_error = visitor.post("/_consent", json={"decision": payload}, headers=SAME_ORIGIN)
    assert json_error.status_code == 400
    assert json_error.headers["content-type"] == "application/json"


def test_the_middlewares_own_pages_forbid_inline_script() -> None:
    visitor = TestClient(middleware(), client=VISITOR)
    for path in ("/_consent/preferences", "/_consent/cookies"):
        response = visitor.get(path)
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"


def test_a_hostile_texts_option_is_refused_when_not_strings() -> None:
    with pytest.raises(ValueError, match="texts"):
        ConsentMiddleware(middleware(), secret_key=SECRET, texts={"en": {"banner.title": ["<script>"]}})
