"""Throughput of the streaming HTML rewriter (consent_middleware.rewriter) with gating on.

Run from the repository root: ``python -m benchmarks.bench_rewriter``. It prints a table and writes
nothing. Every figure is the minimum over several runs (``time.perf_counter``), in MB/s of input
(1 MB = 10**6 bytes). The pages are built here, deterministically:

- ``realistic``: a ~1 MB article/shop page: a head with a Google Analytics gtag snippet and the
  Google Tag Manager snippet, a nav, nested divs, paragraphs with links and inline tags, figures
  with ``srcset``, product cards, lists, comments, a few inline scripts and styles, a YouTube
  iframe, about one tag per 45 bytes;
- ``dense-plain``: 1 MB of ``<b>x</b>``, the most tags per byte a page can have;
- ``dense-img``: 1 MB of ``<img>`` tags, every one a tag the rewriter must read in Python;
- ``dense-gated``: 1 MB of ``<img>`` tags with a Google Analytics URL, every one rewritten.

The registry is the default one (Google Analytics in ``analytics``), with ``analytics`` refused, so
the rewriter scans and gates the whole page. The reference is the standard library's
``html.parser.HTMLParser`` (a subclass whose ``handle_starttag`` does nothing) fed the same page,
already decoded to ``str`` (decoding is not timed: that favours the reference).
"""

from __future__ import annotations

import gc
import html.parser
import random
import time
from collections.abc import Callable

from consent_middleware.gating import GatePolicy
from consent_middleware.registry import CONSENT_SERVICE, DEFAULT_CATEGORIES, GOOGLE_ANALYTICS, Registry
from consent_middleware.rewriter import HtmlRewriter

RUNS = 15
CHUNK = 64 * 1024
SMALL_PAGE = 5 * 1024
HEAD_HTML = b'<script>gtag("consent","default",{"analytics_storage":"denied"});</script>'
BODY_HTML = b'<div id="consent-banner" role="dialog"><form method="post" action="/_consent"></form></div>'

GA_SNIPPET = (
    b'<script async src="https://www.googletagmanager.com/gtag/js?id=G-ABCDEF1234"></script>\n'
    b"<script>\n  window.dataLayer = window.dataLayer || [];\n  function gtag(){dataLayer.push(arguments);}\n"
    b"  gtag('js', new Date());\n  gtag('config', 'G-ABCDEF1234');\n</script>\n"
)
GTM_SNIPPET = (
    b"<script>(function(w,d,s,l,i){w[l]=w[l]||[];w[l].push({'gtm.start':\n"
    b"new Date().getTime(),event:'gtm.js'});var f=d.getElementsByTagName(s)[0],\n"
    b"j=d.createElement(s),dl=l!='dataLayer'?'&l='+l:'';j.async=true;j.src=\n"
    b"'https://www.googletagmanager.com/gtm.js?id='+i+dl;f.parentNode.insertBefore(j,f);\n"
    b"})(window,document,'script','dataLayer','GTM-AB12CD3');</script>\n"
)
WORDS = [
    "lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
    "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "café", "naïve", "prix", "€",
    "garçon", "über",
]  # fmt: skip


class _Words:
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def __call__(self, count: int) -> bytes:
        return " ".join(self._rng.choice(WORDS) for _ in range(count)).encode()

    def number(self, low: int, high: int) -> int:
        return self._rng.randint(low, high)

    def chance(self) -> float:
        return self._rng.random()


def _head() -> bytes:
    return (
        b'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        b'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        b"<title>Shop &amp; Journal - Article</title>\n"
        b'<link rel="preconnect" href="https://www.googletagmanager.com">\n'
        b'<link rel="dns-prefetch" href="//www.google-analytics.com">\n'
        b'<link rel="stylesheet" href="/static/site.css?v=3">\n'
        b'<link rel="icon" href="/favicon.ico">\n'
        b'<link rel="canonical" href="https://shop.example.com/journal/article">\n'
        + GA_SNIPPET
        + GTM_SNIPPET
        + b'<script type="application/ld+json">{"@context":"https://schema.org","@type":"Article"}</script>\n'
        b"<style>body{margin:0;font:16px/1.5 system-ui}.card>a{color:#333}"
        b".price::after{content:'>'}</style>\n"
        b"</head>\n"
    )


def _nav(words: _Words, items_count: int) -> bytes:
    items = b"".join(
        b'<li class="nav-item"><a class="nav-link" href="/c/%d">%s</a></li>' % (i, words(2))
        for i in range(items_count)
    )
    return (
        b'<body class="page article">\n<noscript><iframe src="https://www.googletagmanager.com/ns.html?'
        b'id=GTM-AB12CD3" height="0" width="0" style="display:none;visibility:hidden"></iframe></noscript>\n'
        b'<header class="site-header"><div class="container"><nav id="main-nav"><ul class="nav">'
        + items
        + b"</ul></nav></div></header>\n"
    )


def _paragraph(words: _Words) -> bytes:
    parts = []
    for _ in range(words.number(3, 6)):
        parts.append(words(words.number(10, 24)))
        kind = words.chance()
        if kind < 0.4:
            parts.append(
                b'<a href="/journal/%d" title="%s">%s</a>' % (words.number(1, 999), words(2), words(2))
            )
        elif kind < 0.6:
            parts.append(b"<strong>" + words(2) + b"</strong>")
        elif kind < 0.8:
            parts.append(b'<em class="hl">' + words(1) + b"</em>")
        else:
            parts.append(b"<span data-tip='a > b'>" + words(1) + b"</span>")
    return b"<p>" + b" ".join(parts) + b"</p>\n"


def _figure(words: _Words) -> bytes:
    n = words.number(1, 9999)
    return (
        b'<figure class="media"><picture><source type="image/webp" srcset="/img/%d-480.webp 480w, '
        b'/img/%d-960.webp 960w"><img src="/img/%d-480.jpg" '
        b'srcset="/img/%d-480.jpg 480w, /img/%d-960.jpg 960w" '
        b'sizes="(max-width: 600px) 480px, 960px" alt="%s" loading="lazy" width="480" height="320"></picture>'
        b"<figcaption>%s</figcaption></figure>\n" % (n, n, n, n, n, words(3), words(6))
    )


def _card(words: _Words) -> bytes:
    n = words.number(1, 9999)
    return (
        b'<div class="col-6 col-md-3"><div class="card product" data-id="%d">'
        b'<a href="/p/%d" class="card-link"><img src="/img/p%d.jpg" alt="%s" width="200" height="200"></a>'
        b'<div class="card-body"><h3 class="card-title">%s</h3><span class="price">&euro; %d.99</span>'
        b'<button type="button" class="btn btn-primary" data-action="add">Add</button></div></div></div>\n'
        % (n, n, n, words(2), words(3), words.number(5, 200))
    )


def _section(words: _Words, i: int) -> bytes:
    out = [
        b'<section class="article-section" id="s%d"><div class="container"><div class="row">'
        b'<div class="col-12">' % i,
        b"<h2>" + words(5) + b"</h2>\n",
    ]
    out += [_paragraph(words) for _ in range(words.number(3, 6))]
    if words.chance() < 0.5:
        out.append(_figure(words))
    items = b"".join(b"<li>" + words(5) + b"</li>" for _ in range(words.number(2, 5)))
    out.append(b'<ul class="list">' + items + b"</ul>\n")
    cards = b"".join(_card(words) for _ in range(words.number(0, 2)))
    out.append(b'</div></div><div class="row cards">' + cards + b"</div>")
    if i % 7 == 0:
        out.append(b"<!-- section %d: recommendations -->\n" % i)
    if i % 25 == 0:
        out.append(b"<script>window.__track && window.__track('s%d', {depth: %d});</script>\n" % (i, i))
    if i % 40 == 0:
        out.append(b"<style>.s%d .card{border:1px solid #eee}</style>\n" % i)
    if i == 3:
        out.append(
            b'<iframe width="560" height="315" src="https://www.youtube-nocookie.com/embed/abc" '
            b'title="Video" '
            b'allow="autoplay; encrypted-media" allowfullscreen></iframe>\n'
        )
    out.append(b"</div></section>\n")
    return b"".join(out)


def realistic_page(size: int = 1_000_000, seed: int = 1) -> bytes:
    """A long article/shop page of about ``size`` bytes (see the module docstring)."""
    words = _Words(seed)
    parts = [_head(), _nav(words, 30 if size > 100_000 else 5)]
    total = sum(map(len, parts))
    i = 0
    while total < size - 1500:
        i += 1
        section = _section(words, i)
        parts.append(section)
        total += len(section)
    parts.append(
        b'<footer class="site-footer"><p>&copy; Shop</p></footer>\n'
        b'<script src="/static/app.js" defer></script>\n</body>\n</html>\n'
    )
    return b"".join(parts)


def _repeat(unit: bytes, size: int = 1_000_000) -> bytes:
    return b"<html><head></head><body>" + unit * (size // len(unit))


def default_policy() -> GatePolicy:
    registry = Registry(categories=DEFAULT_CATEGORIES, services=(CONSENT_SERVICE, GOOGLE_ANALYTICS))
    return GatePolicy.build(registry, frozenset({"necessary"}))


def _placeholder(category: str) -> bytes:
    return b'<div class="consent-placeholder" data-category="%s">...</div>' % category.encode()


def rewrite(page: bytes, policy: GatePolicy | None, chunk: int = 0) -> bytes:
    rewriter = HtmlRewriter(head_html=HEAD_HTML, body_html=BODY_HTML, gate=policy, placeholder=_placeholder)
    if not chunk:
        return rewriter.feed(page) + rewriter.close()
    out = [rewriter.feed(page[start : start + chunk]) for start in range(0, len(page), chunk)]
    return b"".join(out) + rewriter.close()


class _NullParser(html.parser.HTMLParser):
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass


def parse_stdlib(text: str) -> None:
    parser = _NullParser(convert_charrefs=False)
    parser.feed(text)
    parser.close()


def best_time(action: Callable[[], object], runs: int = RUNS) -> float:
    """The minimum wall time of ``runs`` calls, garbage collection off while timing."""
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(runs):
            started = time.perf_counter()
            action()
            best = min(best, time.perf_counter() - started)
    finally:
        gc.enable()
    return best


def main() -> None:
    policy = default_policy()
    page = realistic_page()
    small = realistic_page(SMALL_PAGE)
    tags = page.count(b"<")
    print(f"realistic page: {len(page):,} bytes, {tags:,} '<' (one per {len(page) / tags:.0f} bytes)")
    gated = rewrite(page, policy)
    refused = ", ".join(sorted(policy.refused))
    print(f"gated on it: {gated.count(b' data-consent=')} elements; refused: {refused}")
    pages = {
        "realistic": page,
        "dense-plain <b>x</b>": _repeat(b"<b>x</b>"),
        "dense-img <img src=/a.png>": _repeat(b'<img src="/a.png" alt="">'),
        "dense-gated <img src=GA>": _repeat(b'<img src="https://www.google-analytics.com/c.gif" alt="">'),
    }
    print()
    print(f"{'page (1 MB)':<28} {'one chunk':>10} {'64 KiB':>10} {'html.parser':>12} {'ratio':>7}   (MB/s)")
    for label, body in pages.items():
        text = body.decode()
        one = best_time(lambda body=body: rewrite(body, policy))  # type: ignore[misc]
        chunked = best_time(lambda body=body: rewrite(body, policy, CHUNK))  # type: ignore[misc]
        reference = best_time(lambda text=text: parse_stdlib(text))  # type: ignore[misc]
        mb = len(body) / 1e6
        print(
            f"{label:<28} {mb / one:>10.1f} {mb / chunked:>10.1f} {mb / reference:>12.1f} "
            f"{reference / one:>6.1f}x"
        )
    nothing = best_time(lambda: rewrite(page, None))
    print(f"{'realistic, nothing refused':<28} {len(page) / 1e6 / nothing:>10.1f}")
    per_page = best_time(lambda: rewrite(small, policy), runs=RUNS * 20)
    print()
    print(
        f"{len(small):,}-byte page (same head: GA + GTM snippets), new rewriter each time: "
        f"{per_page * 1e6:.1f} us"
    )


if __name__ == "__main__":
    main()
