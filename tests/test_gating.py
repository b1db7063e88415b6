"""Tests for gating (SPEC §3): consent_middleware.gating and the rewriter's gating of elements."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from unittest import mock

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from consent_middleware import rewriter as rewriter_module
from consent_middleware.gating import GatePolicy, url_host
from consent_middleware.registry import (
    CONSENT_SERVICE,
    DEFAULT_CATEGORIES,
    GOOGLE_ANALYTICS,
    Category,
    Registry,
    Service,
)
from consent_middleware.rewriter import MAX_INLINE_SCRIPT_BYTES, HtmlRewriter

YOUTUBE = Service(name="youtube", category="marketing", hosts=("youtube.com", "youtube-nocookie.com"))
CHAT = Service(name="chat", category="preferences", hosts=("widget.chat.example",))
REGISTRY = Registry(
    categories=DEFAULT_CATEGORIES, services=(CONSENT_SERVICE, GOOGLE_ANALYTICS, YOUTUBE, CHAT)
)
ALL_OPTIONAL = ("preferences", "analytics", "marketing")

GA_SCRIPT = b'<script async src="https://www.googletagmanager.com/gtag/js?id=G-ABC123"></script>'
GTM_SNIPPET = (
    b"<script>(function(w,d,s,l,i){w[l]=w[l]||[];w[l].push({'gtm.start':\n"
    b"new Date().getTime(),event:'gtm.js'});var f=d.getElementsByTagName(s)[0],\n"
    b"j=d.createElement(s),dl=l!='dataLayer'?'&l='+l:'';j.async=true;j.src=\n"
    b"'https://www.googletagmanager.com/gtm.js?id='+i+dl;f.parentNode.insertBefore(j,f);\n"
    b"})(window,document,'script','dataLayer','GTM-AB12CD3');</script>"
)
GTAG_CONFIG = (
    b"<script>\n  window.dataLayer = window.dataLayer || [];\n  function gtag(){dataLayer.push(arguments);}\n"
    b"  gtag('js', new Date());\n  gtag('config', 'G-ABC123');\n</script>"
)
GA_PIXEL = b"https://www.google-analytics.com/collect?v=1"
YOUTUBE_EMBED = b"https://www.youtube-nocookie.com/embed/abc"

ANALYTICS = b' data-consent="analytics"'
MARKETING = b' data-consent="marketing"'
INERT = b' type="text/plain"'


def policy(*granted: str, registry: Registry = REGISTRY) -> GatePolicy:
    return GatePolicy.build(registry, frozenset(granted))


def placeholder(category: str) -> bytes:
    return b"[PH:%s]" % category.encode()


def stream(
    chunks: Iterable[bytes],
    gate: GatePolicy | None,
    *,
    placeholder: Callable[[str], bytes] | None = placeholder,
    head: bytes = b"",
    body: bytes = b"",
) -> bytes:
    rewriter = HtmlRewriter(head_html=head, body_html=body, gate=gate, placeholder=placeholder)
    return b"".join(rewriter.feed(chunk) for chunk in chunks) + rewriter.close()


def every_split(doc: bytes) -> Iterator[list[bytes]]:
    """The document whole, byte by byte, and cut once at every position."""
    yield [doc]
    yield [doc[i : i + 1] for i in range(len(doc))]
    for cut in range(len(doc) + 1):
        yield [doc[:cut], doc[cut:]]


def gated(doc: bytes, *granted: str, placeholder: Callable[[str], bytes] | None = placeholder) -> bytes:
    """What ``doc`` becomes for a visitor who granted ``granted``, the same whatever the chunks."""
    gate = policy(*granted)
    whole = stream([doc], gate, placeholder=placeholder)
    for chunks in every_split(doc):
        assert stream(chunks, gate, placeholder=placeholder) == whole, chunks
    return whole


def assert_gated(doc: bytes, expected: bytes, category: str) -> None:
    """``doc`` becomes ``expected`` while ``category`` is refused, and stays as it is once granted
    (or when everything is granted)."""
    assert gated(doc) == expected
    others = [name for name in ALL_OPTIONAL if name != category]
    assert gated(doc, *others) == expected
    assert gated(doc, category) == doc
    assert gated(doc, *ALL_OPTIONAL) == doc


def assert_untouched(doc: bytes) -> None:
    assert gated(doc) == doc


# ------------------------------------------------------------------ the policy


def test_policy_refuses_the_optional_categories_not_granted() -> None:
    gate = policy("marketing", "unknown-category")
    assert gate.granted == {"necessary", "marketing"}
    assert gate.refused == {"preferences", "analytics"}
    assert gate.categories == {"necessary", "preferences", "analytics", "marketing"}
    assert gate.google_category == "analytics"
    assert gate.active
    assert not policy(*ALL_OPTIONAL).active


def test_policy_category_for_url() -> None:
    gate = policy()
    assert gate.category_for_url(b"https://www.google-analytics.com/analytics.js") == "analytics"
    assert gate.category_for_url(b"https://google-analytics.com") == "analytics"
    assert gate.category_for_url(b"http://region1.google-analytics.com/g/collect") == "analytics"
    assert gate.category_for_url(b"//www.youtube.com/embed/x") == "marketing"
    assert gate.category_for_url(b"HTTPS://WWW.YOUTUBE.COM./x") == "marketing"
    assert gate.category_for_url(b" \thttps://user:pw@widget.chat.example:8443/x ") == "preferences"
    assert gate.category_for_url(b"https:\\\\www.google-analytics.com\\x") == "analytics"
    assert gate.category_for_url(b"https://www.google%2Danalytics.com/x") == "analytics"
    assert gate.category_for_url(b"https://www.google-\nanalytics.com/x") == "analytics"
    for url in (
        b"/analytics.js",
        b"www.google-analytics.com/analytics.js",  # relative: a path on the site itself
        b"analytics.js?u=https://www.google-analytics.com",
        b"https://google-analytics.com.evil.net/x",
        b"https://notgoogle-analytics.com/x",
        b"https://example.com/?next=https://www.google-analytics.com/",
        b"https://example.com/#https://www.google-analytics.com/",
        b"data:text/javascript,https://www.google-analytics.com",
        b"javascript://www.google-analytics.com/%0Aalert(1)",
        b"https://[::1]/x",
        b"",
    ):
        assert gate.category_for_url(url) is None, url
    assert policy("analytics").category_for_url(b"https://www.google-analytics.com/a.js") is None


def test_url_host() -> None:
    assert url_host(b"https://a.B.example:80/x?y#z") == b"a.b.example"
    assert url_host(b"//cdn.example") == b"cdn.example"
    assert url_host(b"https:///cdn.example") == b"cdn.example"
    assert url_host(b"ftp://cdn.example") is None
    assert url_host(b"x/y") is None


def test_policy_category_for_srcset() -> None:
    gate = policy()
    assert gate.category_for_srcset(b"/a.png 1x, https://www.google-analytics.com/p.gif 2x") == "analytics"
    assert gate.category_for_srcset(b"https://www.youtube.com/a.png,/b.png 2x") == "marketing"
    # A comma inside a URL does not split it; descriptors may hold commas in parentheses.
    assert gate.category_for_srcset(b"/a.png,https://www.google-analytics.com/p.gif 2x") is None
    assert gate.category_for_srcset(b"/a.png (x, https://www.google-analytics.com/p.gif) 1x") is None
    assert gate.category_for_srcset(b"") is None


def test_policy_google_patterns_need_a_registered_google_service() -> None:
    registry = Registry(categories=DEFAULT_CATEGORIES, services=(CONSENT_SERVICE, YOUTUBE))
    gate = policy(registry=registry)
    assert gate.google_category is None
    assert gate.category_for_inline_script(b"gtag('config', 'G-ABC123'); ga('send');") is None
    assert gate.category_for_inline_script(b"load('https://www.youtube.com/iframe_api')") == "marketing"
    assert gate.category_for_url(b"https://www.googletagmanager.com/gtm.js") is None


def test_policy_google_category_follows_the_service_declaring_the_tag_host() -> None:
    tags = Service(name="tags", category="marketing", hosts=("googletagmanager.com",))
    registry = Registry(categories=DEFAULT_CATEGORIES, services=(tags,))
    assert policy(registry=registry).google_category == "marketing"
    assert policy("marketing", registry=registry).google_category is None
    assert policy(registry=registry).category_for_inline_script(b"gtag('js', new Date())") == "marketing"


def test_policy_marker_categories() -> None:
    gate = policy("marketing")
    assert gate.category_for_marker(b"analytics") == "analytics"
    assert gate.category_for_marker(b" Analytics ") == "analytics"
    assert gate.category_for_marker(b"marketing") is None
    assert gate.category_for_marker(b"necessary") is None
    assert gate.category_for_marker(b"no-such-category") == "no-such-category"
    assert gate.category_for_marker(b"") == ""


def test_policy_for_registry_with_extra_categories() -> None:
    registry = Registry(
        categories=(*DEFAULT_CATEGORIES, Category("video")),
        services=(Service(name="vimeo", category="video", hosts=("player.vimeo.com",)),),
    )
    gate = policy("analytics", "marketing", "preferences", registry=registry)
    assert gate.refused == {"video"}
    assert gated_with(gate, b'<iframe src="https://player.vimeo.com/video/1"></iframe>') == (
        b'[PH:video]<iframe data-consent="video" data-consent-src="https://player.vimeo.com/video/1"></iframe>'
    )


def gated_with(gate: GatePolicy, doc: bytes) -> bytes:
    return stream([doc], gate)


# ------------------------------------------------------------------ rule 1: elements with URLs


def test_external_google_analytics_script() -> None:
    assert_gated(
        GA_SCRIPT,
        b'<script data-consent="analytics" type="text/plain" async '
        b'src="https://www.googletagmanager.com/gtag/js?id=G-ABC123"></script>',
        "analytics",
    )


def test_external_script_of_another_service_and_category() -> None:
    doc = b'<script src="https://www.youtube.com/iframe_api"></script>'
    assert_gated(doc, doc.replace(b"<script", b"<script" + MARKETING + INERT), "marketing")


def test_script_with_existing_type_keeps_it_renamed() -> None:
    src = b' src="https://www.googletagmanager.com/gtag/js"'
    for type_attribute in (b"type=module", b"type='text/javascript'", b'TYPE=" text/JavaScript "'):
        doc = b"<script " + type_attribute + src + b"></script>"
        expected = b"<script" + ANALYTICS + INERT + b" data-consent-" + type_attribute + src + b"></script>"
        assert_gated(doc, expected, "analytics")


def test_own_and_relative_scripts_are_not_gated() -> None:
    assert_untouched(
        b'<script src="/static/app.js"></script><script src="https://cdn.example/x.js"></script>'
    )
    assert_untouched(b'<script src="www.googletagmanager.com/gtag/js"></script>')  # a relative path
    assert_untouched(b'<script src=""></script><script src></script>')


@pytest.mark.parametrize(
    "url",
    [
        b"https://www.google-analytics.com/analytics.js",
        b"https://region1.google-analytics.com/g/collect",
        b"http://analytics.google.com/x",
        b"//www.googletagmanager.com/gtag/js",
        b"HTTPS://WWW.GOOGLETAGMANAGER.COM/gtag/js",
        b"https:&#x2F;&#x2F;www.googletagmanager.com/gtag/js",  # character references
        b"https://www.googletagmanager%2Ecom/gtag/js",  # percent-encoding
        b"https://www.googletagmanager.com./gtag/js",
    ],
)
def test_declared_hosts_and_their_subdomains_are_gated(url: bytes) -> None:
    doc = b'<img src="' + url + b'" alt="">'
    assert_gated(doc, b'<img data-consent="analytics" data-consent-src="' + url + b'" alt="">', "analytics")


@pytest.mark.parametrize(
    "url",
    [
        b"https://google-analytics.com.evil.net/x",
        b"https://notgoogle-analytics.com/x",
        b"https://www.google-analytics.co/x",
        b"https://analytics.google.example/x",
        b"/img/google-analytics.com.png",
        b"google-analytics.com/x",
        b"x.png?ref=https://www.google-analytics.com/",
    ],
)
def test_lookalike_and_relative_urls_are_not_gated(url: bytes) -> None:
    assert_untouched(b'<img src="' + url + b'" alt=""><script src="' + url + b'"></script>')


def test_img_with_src_and_srcset() -> None:
    doc = b'<img src="' + GA_PIXEL + b'" srcset="/a.png 1x, /b.png 2x" alt="x">'
    expected = (
        b'<img data-consent="analytics" data-consent-src="' + GA_PIXEL + b'" '
        b'data-consent-srcset="/a.png 1x, /b.png 2x" alt="x">'
    )
    assert_gated(doc, expected, "analytics")


def test_img_gated_by_a_srcset_url_alone() -> None:
    doc = b'<img src="/a.png" srcset="/a.png 1x, https://region1.google-analytics.com/p.gif 2x">'
    expected = (
        b'<img data-consent="analytics" data-consent-src="/a.png" '
        b'data-consent-srcset="/a.png 1x, https://region1.google-analytics.com/p.gif 2x">'
    )
    assert_gated(doc, expected, "analytics")
    assert_untouched(b'<img src="/a.png" srcset="/a.png 1x, /b.png 2x" alt="google-analytics.com">')


def test_source_with_srcset() -> None:
    doc = (
        b'<picture><source type="image/webp" srcset="https://i.ytimg.youtube.com/v.webp">'
        b"<img src=/v.jpg></picture>"
    )
    expected = (
        b'<picture><source data-consent="marketing" type="image/webp" '
        b'data-consent-srcset="https://i.ytimg.youtube.com/v.webp"><img src=/v.jpg></picture>'
    )
    assert_gated(doc, expected, "marketing")


def test_image_alias_of_img() -> None:
    doc = b'<image src="' + GA_PIXEL + b'">'
    assert_gated(doc, b'<image data-consent="analytics" data-consent-src="' + GA_PIXEL + b'">', "analytics")


@pytest.mark.parametrize(
    "rel", [b"preconnect", b"dns-prefetch", b"preload", b"modulepreload", b"prefetch", b"stylesheet",
            b"Preload", b'"alternate stylesheet"', b"'preconnect'"],
)  # fmt: skip
def test_link_that_loads_or_connects(rel: bytes) -> None:
    doc = b"<link rel=" + rel + b' href="https://www.googletagmanager.com" crossorigin>'
    expected = (
        b"<link"
        + ANALYTICS
        + b" rel="
        + rel
        + b' data-consent-href="https://www.googletagmanager.com" crossorigin>'
    )
    assert_gated(doc, expected, "analytics")


@pytest.mark.parametrize("rel", [b"canonical", b"icon", b"alternate", b"me", b""])
def test_link_that_only_refers_is_left_alone(rel: bytes) -> None:
    assert_untouched(b'<link rel="' + rel + b'" href="https://www.googletagmanager.com/">')
    assert_untouched(b'<link href="https://www.googletagmanager.com/">')


def test_link_preload_with_imagesrcset() -> None:
    doc = b'<link rel=preload as=image imagesrcset="https://www.youtube.com/a.jpg 1x">'
    expected = (
        b'<link data-consent="marketing" rel=preload as=image '
        b'data-consent-imagesrcset="https://www.youtube.com/a.jpg 1x">'
    )
    assert_gated(doc, expected, "marketing")


def test_iframe_gets_a_placeholder_before_it() -> None:
    doc = b'<p>x</p><iframe width="560" src="' + YOUTUBE_EMBED + b'" allowfullscreen></iframe><p>y</p>'
    expected = (
        b'<p>x</p>[PH:marketing]<iframe data-consent="marketing" width="560" data-consent-src="'
        + YOUTUBE_EMBED
        + b'" allowfullscreen></iframe><p>y</p>'
    )
    assert_gated(doc, expected, "marketing")


def test_iframe_without_placeholder_callable() -> None:
    doc = b'<iframe src="' + YOUTUBE_EMBED + b'"></iframe>'
    expected = b'<iframe data-consent="marketing" data-consent-src="' + YOUTUBE_EMBED + b'"></iframe>'
    assert gated(doc, placeholder=None) == expected
    assert gated(doc, "marketing", placeholder=None) == doc


def test_placeholder_is_asked_once_per_category() -> None:
    asked: list[str] = []

    def counting(category: str) -> bytes:
        asked.append(category)
        return b"[PH]"

    doc = (b'<iframe src="' + YOUTUBE_EMBED + b'"></iframe>') * 3
    assert stream([doc], policy(), placeholder=counting).count(b"[PH]") == 3
    assert asked == ["marketing"]


def test_invisible_tracking_frame_gets_no_placeholder() -> None:
    for attributes in (
        b'height="0" width="0"',
        b"width=0",
        b'style="display: none"',
        b"style='visibility:hidden'",
    ):
        doc = (
            b"<noscript><iframe src=https://www.googletagmanager.com/ns.html "
            + attributes
            + b"></iframe></noscript>"
        )
        expected = doc.replace(b"<iframe src", b"<iframe" + ANALYTICS + b" data-consent-src")
        assert_gated(doc, expected, "analytics")


def test_elements_inside_noscript_are_gated() -> None:
    doc = (
        b'<noscript><img src="'
        + GA_PIXEL
        + b'"><script src="//www.googletagmanager.com/x"></script></noscript>'
    )
    expected = (
        b'<noscript><img data-consent="analytics" data-consent-src="'
        + GA_PIXEL
        + b'"><script data-consent="analytics" type="text/plain" src="//www.googletagmanager.com/x">'
        + b"</script></noscript>"
    )
    assert_gated(doc, expected, "analytics")


def test_uppercase_tags_and_attributes() -> None:
    doc = b"<SCRIPT SRC='https://WWW.GoogleTagManager.com/gtag/js' TYPE=text/javascript></SCRIPT>"
    expected = (
        b"<SCRIPT" + ANALYTICS + INERT + b" SRC='https://WWW.GoogleTagManager.com/gtag/js' "
        b"data-consent-TYPE=text/javascript></SCRIPT>"
    )
    assert_gated(doc, expected, "analytics")
    doc = b"<IMG SRC=" + GA_PIXEL + b" SrcSet=/a.png>"
    assert_gated(
        doc,
        b"<IMG" + ANALYTICS + b" data-consent-SRC=" + GA_PIXEL + b" data-consent-SrcSet=/a.png>",
        "analytics",
    )


def test_unquoted_single_quoted_and_odd_attribute_syntax() -> None:
    doc = b"<img\nalt='a > b'\tsrc=" + GA_PIXEL + b"/>"
    expected = b"<img" + ANALYTICS + b"\nalt='a > b'\tdata-consent-src=" + GA_PIXEL + b"/>"
    assert_gated(doc, expected, "analytics")
    doc = b"<img/src = '" + GA_PIXEL + b"'/>"
    assert_gated(doc, b"<img" + ANALYTICS + b"/data-consent-src = '" + GA_PIXEL + b"'/>", "analytics")


def test_duplicate_url_attributes_are_all_renamed() -> None:
    # A browser reads the first; renaming only that one would let the second load.
    doc = b'<img src="' + GA_PIXEL + b'" src="/local.png">'
    expected = (
        b'<img data-consent="analytics" data-consent-src="' + GA_PIXEL + b'" data-consent-src="/local.png">'
    )
    assert_gated(doc, expected, "analytics")
    assert_untouched(b'<img src="/local.png" src="' + GA_PIXEL + b'">')  # the second is ignored


def test_urls_inside_comments_raw_text_and_attribute_values_are_not_gated() -> None:
    img = b'<img src="' + GA_PIXEL + b'">'
    script = GA_SCRIPT
    for doc in (
        b"<!-- " + img + script + b" -->",
        b"<!--" + img + b"--!>",
        b"<textarea>" + img + script + b"</textarea>",
        b"<title>" + img + b"</title>",
        b"<style>/*" + img + b"*/</style>",
        b"<xmp>" + img + b"</xmp>",
        b"<a title='" + img + b"' data-x=\"" + script + b'">x</a>',
        b"<script type=text/template>" + img + b"</script>",
        b"<!DOCTYPE html " + img + b">",
    ):
        assert_untouched(doc)


def test_iframe_content_is_not_markup() -> None:
    doc = b'<iframe src="/local"><img src="' + GA_PIXEL + b'"></iframe>'
    assert_untouched(doc)


# ------------------------------------------------------------------ rule 2: inline scripts


def test_gtm_inline_snippet() -> None:
    assert_gated(
        GTM_SNIPPET, GTM_SNIPPET.replace(b"<script>", b"<script" + ANALYTICS + INERT + b">", 1), "analytics"
    )


def test_gtag_inline_config() -> None:
    assert_gated(
        GTAG_CONFIG, GTAG_CONFIG.replace(b"<script>", b"<script" + ANALYTICS + INERT + b">"), "analytics"
    )


def inline(body: bytes, start: bytes = b"<script>") -> bytes:
    return start + body + b"</script>"


def assert_inline_gated(body: bytes, start: bytes = b"<script>") -> None:
    doc = inline(body, start)
    attributes = start[len(b"<script") :].replace(b" type=", b" data-consent-type=")
    expected = b"<script" + ANALYTICS + INERT + attributes + body + b"</script>"
    assert_gated(doc, expected, "analytics")


@pytest.mark.parametrize(
    "body",
    [
        b"ga('create', x, 'auto');",
        b"window.ga('send', 'pageview')",
        b"if (ga) ga ('send')",
        b"gtag('event', 'purchase')",
        b"x=1;\ngtag\n(",
    ],
)
def test_ga_and_gtag_calls(body: bytes) -> None:
    assert_inline_gated(body)


@pytest.mark.parametrize(
    "body",
    [b"mega('x')", b"omega (1)", b"$ga(1)", b"_ga(1)", b"ga", b"var ga = 1;", b"gtagger(1)", b"my_gtag(1)",
     b"saga.push(1)"],
)  # fmt: skip
def test_names_that_only_contain_ga_or_gtag(body: bytes) -> None:
    assert_untouched(inline(body))


@pytest.mark.parametrize(
    "tag_id", [b"G-ABC123", b"GT-ABCD123", b"GTM-AB12CD3", b"AW-123456789", b"UA-12345-1"]
)
def test_google_tag_ids(tag_id: bytes) -> None:
    assert_inline_gated(b"var id = '" + tag_id + b"';")
    assert_inline_gated(b"load(" + tag_id + b")")
    assert_inline_gated(b'{"id":"' + tag_id + b'"}')


@pytest.mark.parametrize(
    "text",
    [b"XG-ABC123", b"G-AB1", b"g-abc123", b"img-ABCD", b"G-ABC123x", b"G-ABC123-x", b"MUA-12345-1",
     b"UA-12345",
     b"UA-abcde-1", b"my-G-ABC123"],
)  # fmt: skip
def test_text_that_only_looks_like_a_tag_id(text: bytes) -> None:
    assert_untouched(inline(b"var s = '" + text + b"';"))


@pytest.mark.parametrize(
    "body",
    [
        b"dataLayer.push({'gtm.start': new Date().getTime(), event: 'gtm.js'});",
        b"window.dataLayer.push({event: 'purchase', value: 3});",
        b"dataLayer . push ( {\n'event':'x'})",
        b"function f(){dataLayer.push(arguments);}",
        b"w[l].push({'gtm.start': 1})",
    ],
)
def test_data_layer_config(body: bytes) -> None:
    assert_inline_gated(body)


@pytest.mark.parametrize(
    "body", [b"dataLayer.push(x)", b"dataLayer.length", b"mydataLayer.push({a: 1})", b"var dataLayer = [];"]
)
def test_data_layer_without_config(body: bytes) -> None:
    assert_untouched(inline(body))


def test_inline_script_mentioning_a_declared_host() -> None:
    assert_inline_gated(b"s.src = 'https://www.googletagmanager.com/gtm.js?id=' + id;")
    assert_inline_gated(b"load('//region1.Google-Analytics.com/g/collect')")
    body = b"player('https://www.youtube.com/iframe_api')"
    assert_gated(inline(body), b"<script" + MARKETING + INERT + b">" + body + b"</script>", "marketing")


@pytest.mark.parametrize(
    "body",
    [
        b"load('https://notgoogletagmanager.com/x.js')",
        b"load('https://googletagmanager.com.evil.net/x.js')",
        b"var googletagmanager_com = 1;",
        b"// google-analytics-like",
    ],
)
def test_inline_script_mentioning_a_lookalike_host(body: bytes) -> None:
    assert_untouched(inline(body))


def test_inline_script_with_js_types_and_attributes() -> None:
    assert_inline_gated(b"gtag('js')", b"<script type=module>")
    assert_inline_gated(b"gtag('js')", b'<script type="" nonce="abc">')
    assert_inline_gated(b"gtag('js')", b"<script type='text/javascript; charset=utf-8'>")
    assert_inline_gated(b"gtag('js')", b"<script\n  async>")
    body = b"gtag('js')"
    doc = b"<script TYPE='text/javascript'>" + body + b"</script>"
    expected = b"<script" + ANALYTICS + INERT + b" data-consent-TYPE='text/javascript'>" + body + b"</script>"
    assert_gated(doc, expected, "analytics")


@pytest.mark.parametrize(
    "start",
    [
        b'<script type="application/ld+json">',
        b"<script type=text/template>",
        b"<script type='text/plain'>",
        b"<script type=importmap>",
        b"<script type=text/x-handlebars-template>",
    ],
)
def test_scripts_that_are_data_are_left_alone(start: bytes) -> None:
    assert_untouched(start + b'{"u": "https://www.googletagmanager.com/", "id": "G-ABC123"}</script>')
    assert_untouched(start[:-1] + b' src="https://www.googletagmanager.com/x"></script>')


def test_inline_script_with_escapes_is_decided_at_its_real_end() -> None:
    body = b"<!-- document.write('<script>x</script>'); gtag('js') -->"
    assert_inline_gated(body)
    body = b"x = '</scr' + 'ipt>'; ga('send')"
    assert_inline_gated(body)


def test_inline_script_is_held_until_its_end_tag() -> None:
    rewriter = HtmlRewriter(gate=policy())
    assert rewriter.feed(b"<p>a</p><script>var x") == b"<p>a</p>"
    assert rewriter.feed(b" = 1;") == b""
    assert rewriter.feed(b" gtag('js');</scr") == b""
    assert (
        rewriter.feed(b"ipt><p>b") == b"<script" + ANALYTICS + INERT + b">var x = 1; gtag('js');</script><p>b"
    )
    assert rewriter.close() == b""


def test_unclosed_inline_script_is_decided_at_the_end_of_the_stream() -> None:
    assert_inline_gated(b"gtag('js');")  # sanity
    doc = b"<p>x</p><script>gtag('js'); </scr"
    assert_gated(doc, doc.replace(b"<script>", b"<script" + ANALYTICS + INERT + b">"), "analytics")
    assert_untouched(b"<script>var x = 1;")


def test_inline_script_body_over_the_bound_passes_through_ungated() -> None:
    filler = b"x = 1;\n" * (MAX_INLINE_SCRIPT_BYTES // 7 + 1)
    doc = b"<script>gtag('js');" + filler + b"</script><img src=" + GA_PIXEL + b">"
    expected = (
        b"<script>gtag('js');"
        + filler
        + b"</script><img"
        + ANALYTICS
        + b" data-consent-src="
        + GA_PIXEL
        + b">"
    )
    gate = policy()
    assert stream([doc], gate) == expected
    assert stream([doc[i : i + 4096] for i in range(0, len(doc), 4096)], gate) == expected
    # Just under the bound it is still decided.
    body = b"gtag('js');" + b"x" * (MAX_INLINE_SCRIPT_BYTES - len(b"gtag('js');"))
    assert stream([inline(body)], gate).startswith(b"<script" + ANALYTICS + INERT + b">")


def test_holding_a_long_inline_script_is_bounded() -> None:
    rewriter = HtmlRewriter(gate=policy())
    chunk = b"var a = '<b>'; // " + b"y" * 1000 + b"\n"
    fed = len(b"<script>")
    sent = len(rewriter.feed(b"<script>"))
    for _ in range(2 * 1024 * 1024 // len(chunk)):
        sent += len(rewriter.feed(chunk))
        fed += len(chunk)
        assert fed - sent <= MAX_INLINE_SCRIPT_BYTES + 2 * len(chunk)
    assert sent + len(rewriter.close()) == fed


# ------------------------------------------------------------------ rule 3: data-consent


def test_data_consent_on_any_element() -> None:
    doc = b'<div data-consent="marketing" class="embed"><a data-consent=marketing href="https://x.example/">x</a></div>'
    expected = (
        b'<div data-consent="marketing" class="embed">'
        b'<a data-consent=marketing data-consent-href="https://x.example/">x</a></div>'
    )
    assert_gated(doc, expected, "marketing")


def test_data_consent_on_img_and_iframe() -> None:
    doc = (
        b"<img DATA-CONSENT='preferences' src=/map.png srcset='/map2.png 2x'>"
        b"<iframe data-consent=preferences src=/w>"
    )
    expected = (
        b"<img DATA-CONSENT='preferences' data-consent-src=/map.png data-consent-srcset='/map2.png 2x'>"
        b"[PH:preferences]<iframe data-consent=preferences data-consent-src=/w>"
    )
    assert_gated(doc, expected, "preferences")


def test_data_consent_on_scripts() -> None:
    for start in (b"<script data-consent='marketing' src=/pixel.js>", b"<script data-consent=marketing>"):
        doc = start + b"track()</script>"
        expected = b"<script" + INERT + start[len(b"<script") :] + b"track()</script>"
        assert_gated(doc, expected, "marketing")
    doc = b"<script data-consent=marketing type=module>track()</script>"
    assert_gated(
        doc,
        b"<script" + INERT + b" data-consent=marketing data-consent-type=module>track()</script>",
        "marketing",
    )


def test_data_consent_on_scripts_that_do_not_run_changes_nothing() -> None:
    assert_untouched(b"<script type='text/plain' data-consent=marketing>track()</script>")
    assert_untouched(b'<script type="application/ld+json" data-consent=marketing>{}</script>')


def test_data_consent_names_the_category_over_the_detected_one() -> None:
    # The operator's word decides: a GA pixel marked "necessary" (or granted "marketing") loads.
    assert_untouched(b'<img data-consent="necessary" src="' + GA_PIXEL + b'">')
    assert gated(b"<script data-consent=marketing>gtag('js')</script>", "marketing") == (
        b"<script data-consent=marketing>gtag('js')</script>"
    )
    doc = b'<img data-consent=marketing src="' + GA_PIXEL + b'">'
    assert gated(doc, "analytics") == b'<img data-consent=marketing data-consent-src="' + GA_PIXEL + b'">'


def test_iframe_marked_with_an_unknown_category_gets_no_placeholder() -> None:
    doc = b"<iframe data-consent=video src=/v></iframe><iframe data-consent='x\"><b>' src=/w></iframe>"
    expected = doc.replace(b" src=", b" data-consent-src=")
    assert gated(doc) == expected
    assert gated(doc, *ALL_OPTIONAL) == doc


def test_data_consent_with_unknown_or_empty_category_is_never_granted() -> None:
    for marker in (b"data-consent=video", b"data-consent", b'data-consent=""'):
        doc = b"<img " + marker + b" src=/v.png>"
        expected = b"<img " + marker + b" data-consent-src=/v.png>"
        assert gated(doc) == expected
        assert gated(doc, "analytics", "marketing") == expected


def test_data_consent_lookalike_attributes_are_not_markers() -> None:
    assert_untouched(b"<div data-consent-x=marketing><img data-consentx=marketing src=/a.png></div>")
    assert_untouched(b"<img alt='data-consent=marketing' src=/a.png><p title=\"data-consent=x\">")


def test_data_consent_on_head_and_body_tags_keeps_the_insertions() -> None:
    doc = b"<head data-consent=marketing><body data-consent=marketing>"
    out = stream([doc], policy(), head=b"[H]", body=b"[B]")
    assert out == doc.replace(b">", b">[H]", 1) + b"[B]"


# ------------------------------------------------------------------ nothing refused, insertions, mixing


def test_nothing_is_gated_when_nothing_is_refused() -> None:
    doc = GA_SCRIPT + GTM_SNIPPET + b'<img data-consent=unknown src="' + GA_PIXEL + b'">'
    gate = policy(*ALL_OPTIONAL)
    assert not gate.active
    rewriter = HtmlRewriter(body_html=b"[B]", gate=gate, placeholder=placeholder)
    assert rewriter.feed(b"<body>") == b"<body>[B]"
    assert rewriter.feed(doc) is doc  # pass-through: not scanned at all
    assert rewriter.close() == b""


def test_gating_and_insertions_together() -> None:
    doc = b"<html><head>" + GA_SCRIPT + b"</head><body><p>x</p></body></html>"
    out = stream([doc], policy(), head=b"[H]", body=b"[B]")
    assert out == (
        b"<html><head>[H]<script"
        + ANALYTICS
        + INERT
        + GA_SCRIPT[len(b"<script") :]
        + b"</head><body>[B]<p>x</p>"
        b"</body></html>"
    )


def test_scanning_continues_after_the_insertions() -> None:
    doc = b"<head><body>" + b"<p>text</p>" * 100 + b'<img src="' + GA_PIXEL + b'">'
    out = stream([doc], policy(), head=b"[H]", body=b"[B]")
    assert out.endswith(b"<img" + ANALYTICS + b' data-consent-src="' + GA_PIXEL + b'">')


def test_over_long_tags_are_streamed_ungated() -> None:
    doc = b'<img alt="' + b"x" * (70 * 1024) + b'" src="' + GA_PIXEL + b'">'
    assert stream([doc[i : i + 1000] for i in range(0, len(doc), 1000)], policy()) == doc


def test_a_gated_realistic_page_is_fast() -> None:
    # Generous bound: catches super-linear behaviour, not a benchmark.
    section = (
        b'<div class="row"><p>Text <a href="/a?b=1&amp;c=2">link</a> <em>more</em> text &lt; 3.</p>'
        b'<img src="/img/a.jpg" srcset="/img/a.jpg 1x, /img/b.jpg 2x" alt="">'
        b'<img src="' + GA_PIXEL + b'"><!-- note --><script>if (a < b) { x = "</div>"; }</script>'
        b"<script>gtag('event', 'view');</script></div>\n"
    )
    doc = (
        b"<html><head>" + GA_SCRIPT + GTM_SNIPPET + b"</head><body>" + section * (1024 * 1024 // len(section))
    )
    gate = policy()
    chunks = [doc[i : i + 65536] for i in range(0, len(doc), 65536)]
    started = time.perf_counter()
    out = stream(chunks, gate, body=b"[B]")
    elapsed = time.perf_counter() - started
    assert out.count(ANALYTICS) == 2 + 2 * (1024 * 1024 // len(section))
    assert elapsed < 2.0


# ------------------------------------------------------------------ properties

# Markers that generated documents never contain (so restore() is unambiguous).
HEAD_MARK = b"\xfe{{HEAD-MARK}}\xff"
BODY_MARK = b"\xfe{{BODY-MARK}}\xff"
_INSERTED_MARKER_RE = re.compile(rb' data-consent="[a-z0-9_-]*"')
_PLACEHOLDER_RE = re.compile(rb"\xfe\{\{PH:[a-z0-9_-]*\}\}\xff")
_FORBIDDEN = (HEAD_MARK, BODY_MARK, b"\xfe{{PH:", b' data-consent="', INERT, b"data-consent-")


def marked_placeholder(category: str) -> bytes:
    return b"\xfe{{PH:%s}}\xff" % category.encode()


def restore(out: bytes) -> bytes:
    """The input of the rewriter, from its output: the gated forms undone byte for byte."""
    out = out.replace(HEAD_MARK, b"").replace(BODY_MARK, b"")
    out = _PLACEHOLDER_RE.sub(b"", out)
    out = _INSERTED_MARKER_RE.sub(b"", out)
    out = out.replace(INERT, b"")
    return out.replace(b"data-consent-", b"")


_URLS = st.sampled_from(
    [
        "https://www.googletagmanager.com/gtag/js?id=G-ABC123",
        "//region1.google-analytics.com/g/collect",
        "HTTPS://WWW.GOOGLE-ANALYTICS.COM/x.gif",
        "https://www.youtube-nocookie.com/embed/x",
        "https://widget.chat.example/w.js",
        "https://google-analytics.com.evil.net/x",
        "https://notgoogle-analytics.com/x",
        "/local/app.js",
        "img/é.png",
        "https:&#x2F;&#x2F;www.youtube.com/x",
        "",
    ]
)
_QUOTES = st.sampled_from(['"', "'", ""])
_SPACE = st.sampled_from([" ", "\n", "\t", "  ", "/"])
_URL_ATTRIBUTE = st.builds(
    lambda name, space, quote, url: f"{space}{name}={quote}{url}{quote}",
    st.sampled_from(["src", "SRC", "href", "srcset", "SrcSet", "imagesrcset"]),
    _SPACE,
    _QUOTES,
    _URLS,
)
_OTHER_ATTRIBUTE = st.sampled_from(
    [
        " alt='a > b'", ' class="x"', " async", " defer", " type=module", " type='text/javascript'",
        ' type="application/ld+json"', " TYPE=text/template", " rel=preconnect", ' rel="dns-prefetch"',
        " rel=stylesheet", " rel=canonical", " REL='preload'", " width=0", ' style="display:none"',
        " data-consent='marketing'", " DATA-CONSENT=analytics", " data-consent=necessary",
        " data-consent=video",
        " data-consent", " data-consentx=1", ' title="<img src=//www.google-analytics.com/x>"', " =x", ' a="',
    ]
)  # fmt: skip
_GATED_TAG = st.builds(
    lambda name, attributes, end: f"<{name}{''.join(attributes)}{end}",
    st.sampled_from(
        ["img", "IMG", "image", "source", "link", "Link", "iframe", "script", "SCRIPT", "div", "a"]
    ),
    st.lists(st.one_of(_URL_ATTRIBUTE, _OTHER_ATTRIBUTE), max_size=4),
    st.sampled_from([">", "/>", " >", ""]),
)
_SCRIPT_BODY = st.sampled_from(
    [
        "gtag('config', 'G-ABC123');", "ga('send')", "mega('x')", "var id = 'UA-12345-1';",
        "x = 'GTM-AB12CD3'",
        "dataLayer.push({event: 'x'})", "dataLayer.push(x)", "load('https://www.youtube.com/api')",
        "load('https://notgoogletagmanager.com/x')", "if (a < b) c();", "'</scr' + 'ipt>'",
        "<!-- <script> --> gtag('js')", "é€😀", "</script", "<!--", "-->",
    ]
)  # fmt: skip
_INLINE_SCRIPT = st.builds(
    lambda start, parts, end: f"{start}{''.join(parts)}{end}",
    st.sampled_from(
        ["<script>", "<SCRIPT type=module>", "<script type='application/ld+json'>", "<script\nasync>"]
    ),
    st.lists(_SCRIPT_BODY, max_size=3),
    st.sampled_from(["</script>", "</SCRIPT >", ""]),
)
_OTHER = st.sampled_from(
    [
        "<!-- <img src=https://www.google-analytics.com/x> -->", "<!--", "-->", "<textarea>", "</textarea>",
        "<title><script>ga('x')</script></title>", "<noscript>", "</noscript>", "<head>", "<body>", "<p>",
        "</p>",
        "<!DOCTYPE html>", "<", ">", "'", '"', "é", "😀", "<br/>", "<style>", "</style>", "&amp;", "text ",
    ]
)  # fmt: skip
_PIECE = st.one_of(
    _GATED_TAG.map(str.encode), _INLINE_SCRIPT.map(str.encode), _OTHER.map(str.encode), st.binary(max_size=4)
)
GATING_DOCS = st.lists(_PIECE, max_size=20).map(b"".join)
CUTS = st.lists(st.integers(min_value=0, max_value=10_000), max_size=8)
#: A skip pattern that skips nothing but text: the rewriter then reads every tag the exact way.
STOP_EVERYWHERE = re.compile(rb"[^<]*+")
GRANTS = st.sets(st.sampled_from(ALL_OPTIONAL)).map(lambda granted: tuple(sorted(granted)))


def split_at(doc: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({cut % (len(doc) + 1) for cut in cuts})
    return [doc[start:end] for start, end in zip([0, *points], [*points, len(doc)], strict=True)]


def _rewrite(chunks: Iterable[bytes], granted: tuple[str, ...]) -> bytes:
    return stream(chunks, policy(*granted), placeholder=marked_placeholder, head=HEAD_MARK, body=BODY_MARK)


@given(doc=GATING_DOCS, cuts=CUTS, granted=GRANTS)
def test_gated_output_does_not_depend_on_chunk_boundaries(
    doc: bytes, cuts: list[int], granted: tuple[str, ...]
) -> None:
    whole = _rewrite([doc], granted)
    assert _rewrite(split_at(doc, cuts), granted) == whole
    assert _rewrite([doc[i : i + 1] for i in range(len(doc))], granted) == whole


@given(doc=GATING_DOCS, cuts=CUTS, granted=GRANTS)
def test_gating_is_reversible_byte_for_byte(doc: bytes, cuts: list[int], granted: tuple[str, ...]) -> None:
    assume(not any(forbidden in doc for forbidden in _FORBIDDEN))
    out = _rewrite(split_at(doc, cuts), granted)
    assert restore(out) == doc
    if len(granted) == len(ALL_OPTIONAL):  # nothing refused: only the insertions
        assert out.replace(HEAD_MARK, b"").replace(BODY_MARK, b"") == doc


#: Tag soup from the bytes that decide where a tag ends and which tags the fast path must stop at.
_SOUP_TOKENS = [
    "<", ">", "/", "=", '"', "'", " ", "\n", "\t", "\\", ":", "&", "&#47;", "a", "d", "s", "x", "img", "IMG",
    "image", "source", "script", "link", "p", "i", "data-consent", "DATA-consent", "data-consentx", "!", "-",
    "--", "?", "src", "srcset", "https://www.google-analytics.com/", "//www.youtube.com",
]  # fmt: skip
TAG_SOUP = st.lists(
    st.sampled_from(_SOUP_TOKENS),
    max_size=40,
).map(lambda tokens: "".join(tokens).encode())


@given(doc=st.one_of(GATING_DOCS, TAG_SOUP), cuts=CUTS, granted=GRANTS)
def test_fast_path_reads_tags_as_the_exact_path_does(
    doc: bytes, cuts: list[int], granted: tuple[str, ...]
) -> None:
    # With a skip pattern that stops at every "<", every tag goes through the exact tokenizer.
    fast = _rewrite([doc], granted)
    with mock.patch.object(rewriter_module, "_GATING_SKIP_RE", STOP_EVERYWHERE):
        assert _rewrite(split_at(doc, cuts), granted) == fast
