"""The page cache: whole pages rewritten once per content and decision, filled per request."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from consent_middleware import ConsentMiddleware, Service
from consent_middleware.config import ConsentConfig
from consent_middleware.gating import GatePolicy
from consent_middleware.rewriter import HtmlRewriter, PageCache

from .conftest import SECRET, html_app

GA = b'<script async src="https://www.googletagmanager.com/gtag/js?id=G-TEST123456"></script>'
VIDEO = b'<iframe src="https://www.youtube.com/embed/x" width="560" height="315"></iframe>'
REGISTRY = ConsentConfig.from_options(
    None,
    secret_key=SECRET,
    services=[Service(name="youtube", category="marketing", hosts=("youtube.com",))],
).registry
REFUSED = GatePolicy.build(REGISTRY, ())


def page(middle: bytes = b"<p>Hello</p>") -> bytes:
    return b"<!doctype html><html><head><title>T</title>" + GA + b"</head><body>" + middle + b"</body></html>"


def placeholder(category: str) -> bytes:
    return b"<div class=placeholder>" + category.encode() + b"</div>"


def direct(document: bytes, head: bytes, body: bytes) -> bytes:
    rewriter = HtmlRewriter(head_html=head, body_html=body, gate=REFUSED, placeholder=placeholder)
    return rewriter.feed(document) + rewriter.close()


def cached(cache: PageCache, document: bytes, head: bytes, body: bytes) -> bytes:
    return cache.rewrite(
        document, key=frozenset(), gate=REFUSED, head_html=head, body_html=body, placeholder=placeholder
    )


def test_a_kept_page_gets_each_requests_own_markup() -> None:
    cache = PageCache()
    document = page(VIDEO)
    for banner in (b"<div>nl</div>", b"<div>fr</div>", b"<div>de</div>", b"<div>en</div>"):
        assert cached(cache, bytes(document), b"<s>head</s>", banner) == direct(
            document, b"<s>head</s>", banner
        )


def test_pages_alike_at_the_sampled_bytes_are_never_mixed_up() -> None:
    cache = PageCache()
    # Same length and same middle: only a byte away from the sampled middle differs.
    first = page(b"<p>1" + b"a" * 600 + b"</p>")
    second = page(b"<p>2" + b"a" * 600 + b"</p>")
    assert len(first) == len(second)
    middle = len(first) // 2
    assert first[middle - 100 : middle + 100] == second[middle - 100 : middle + 100]
    for document in (first, first, second, first, second, second):
        assert cached(cache, document, b"", b"<div>banner</div>") == direct(
            document, b"", b"<div>banner</div>"
        )


def test_the_cache_keeps_within_its_byte_budget() -> None:
    cache = PageCache(max_bytes=64 * 1024)
    for index in range(200):
        document = page(b"<p>%d</p>" % index + b"x" * 2000)
        for _ in range(3):
            assert cached(cache, document, b"", b"<b>") == direct(document, b"", b"<b>")
    assert 0 < cache._size <= 64 * 1024


def test_a_page_with_a_nul_byte_is_rewritten_every_time() -> None:
    cache = PageCache()
    document = page(b"<p>\x00</p>")
    for _ in range(3):
        assert cached(cache, document, b"h", b"b") == direct(document, b"h", b"b")
    assert not cache._templates


html_soup = st.lists(
    st.sampled_from(
        [b"<p>", b"</p>", b"text", b"<head>", b"<body>", GA, VIDEO, b"<!--", b"-->", b"<script>",
         b"</script>", b"gtag('config','G-ABCDEF1234')", b"\x00", b"<img src=//youtube.com/i.png>", b"<",
         b">", b'"']
    ),
    max_size=30,
).map(b"".join)  # fmt: skip


@given(documents=st.lists(html_soup, min_size=1, max_size=4), banner=st.binary(max_size=20))
def test_the_cache_gives_what_the_rewriter_gives(documents: list[bytes], banner: bytes) -> None:
    cache = PageCache()
    for document in documents * 3:  # each seen often enough to be kept, then served from the cache
        assert cached(cache, document, b"<h>", banner) == direct(document, b"<h>", banner)


def test_two_visitors_of_one_page_each_get_their_own_language() -> None:
    client = TestClient(ConsentMiddleware(html_app(page()), secret_key=SECRET, languages=("en", "nl", "fr")))
    for _ in range(3):  # kept from the second sighting on
        dutch = client.get("/", headers={"Accept-Language": "nl"}).text
        french = client.get("/", headers={"Accept-Language": "fr"}).text
        assert '<div id="consent-banner" lang="nl"' in dutch
        assert '<div id="consent-banner" lang="fr"' in french
