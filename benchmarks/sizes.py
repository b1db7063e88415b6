"""The banner's size budget: script + stylesheet gzipped, and the injected markup in every language.

Run from the repository root: ``python -m benchmarks.sizes``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from consent_middleware.config import ConsentConfig
from consent_middleware.locales import AVAILABLE_LANGUAGES
from consent_middleware.render import Renderer

ROOT = Path(__file__).resolve().parent.parent
BUDGET = 4096


def main() -> None:
    js = (ROOT / "static/banner/banner.js").read_bytes()
    css = (ROOT / "static/banner/banner.css").read_bytes()
    js_gz, css_gz = len(gzip.compress(js, 9)), len(gzip.compress(css, 9))
    print(f"banner.js   {len(js):6d} B raw {js_gz:6d} B gzipped")
    print(f"banner.css  {len(css):6d} B raw {css_gz:6d} B gzipped")
    print(f"together                {js_gz + css_gz:6d} B gzipped (budget {BUDGET})")

    config = ConsentConfig(secret_key=("x" * 32,))
    renderer = Renderer(
        registry=config.registry,
        languages=AVAILABLE_LANGUAGES,
        default_language="en",
        prefix=config.prefix,
        static_urls={
            "banner.js": "/_consent/static/banner.0123456789ab.js",
            "banner.css": "/_consent/static/banner.0123456789ab.css",
        },
    )
    sizes = {
        language: len(
            renderer.banner(
                language=language,
                next_path="/products/page?id=12",
                nonce="n0nceN0nceN0nceN0nce",
                gpc=True,
                reload=True,
            ).encode()
        )
        for language in AVAILABLE_LANGUAGES
    }
    smallest, largest = min(sizes, key=sizes.__getitem__), max(sizes, key=sizes.__getitem__)
    print(
        f"banner markup, {len(sizes)} languages in the switcher, GPC line, nonce, reload: "
        f"{sizes[smallest]} B ({smallest}) to {sizes[largest]} B ({largest}) (budget {BUDGET})"
    )


if __name__ == "__main__":
    main()
