"""Path traversal on the static route (SECURITY.md §8).

Only the two content-hashed names exist (``banner.HASH.js``, ``banner.HASH.css``, read into memory at
start-up); no part of a request path ever reaches the file system. Driven as raw ASGI, so ``path``
(decoded, as a server passes it) and ``raw_path`` carry exactly the bytes under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import body_of, drive, headers_of, http_scope
from tests.security.helpers import hashed_asset_names, middleware

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
STATIC = "/_consent/static/"


JS, CSS = hashed_asset_names()

#: (path as the server decodes it, raw path as sent); None: the same bytes.
TRAVERSALS: list[tuple[str, str | None]] = [
    (STATIC + "../../pyproject.toml", None),
    (STATIC + "../../../../../../etc/passwd", None),
    (STATIC + "../../pyproject.toml", STATIC + "..%2f..%2fpyproject.toml"),
    (STATIC + "../../pyproject.toml", STATIC + "..%2F..%2Fpyproject.toml"),
    (STATIC + "../../pyproject.toml", STATIC + "%2e%2e/%2e%2e/pyproject.toml"),
    (STATIC + "../../pyproject.toml", STATIC + "%2E%2E/%2E%2E/pyproject.toml"),
    (STATIC + "../../pyproject.toml", STATIC + "%2e%2e%2f%2e%2e%2fpyproject.toml"),
    (STATIC + "%2e%2e/%2e%2e/pyproject.toml", STATIC + "%252e%252e/%252e%252e/pyproject.toml"),
    (STATIC + "..\\..\\pyproject.toml", None),
    (STATIC + "..\\..\\pyproject.toml", STATIC + "..%5c..%5cpyproject.toml"),
    (STATIC + "/etc/passwd", None),
    (STATIC + "//etc/passwd", None),
    (STATIC + "C:\\Windows\\win.ini", None),
    (STATIC + "file:///etc/passwd", None),
    (STATIC + "~/.ssh/id_rsa", None),
    (STATIC + "....//....//pyproject.toml", None),
    (STATIC + "..;/..;/pyproject.toml", None),
    (STATIC + "\u2025/\u2025/pyproject.toml", None),
    (STATIC + "\xc0\xae\xc0\xae/pyproject.toml", STATIC + "%c0%ae%c0%ae/pyproject.toml"),
    (STATIC + JS + "\x00.txt", STATIC + JS + "%00.txt"),
    (STATIC + JS + "\x00", STATIC + JS + "%00"),
    (STATIC + "banner.js", None),
    (STATIC + "banner.css", None),
    (STATIC + "../../static/banner/banner.js", None),
    (STATIC + "../banner/banner.js", None),
    (STATIC + "../static/banner.js", None),
    (STATIC + "a/banner.js", None),
    (STATIC + "./" + JS, None),
    (STATIC + "a/../" + JS, None),
    (STATIC + JS + "/", None),
    (STATIC + JS + "/..", None),
    (STATIC + JS + "/../../../../pyproject.toml", None),
    (STATIC + CSS + "/../../../../etc/passwd", None),
    (STATIC + JS.upper(), None),
    (STATIC + " " + JS, None),
    (STATIC + JS + " ", None),
    (STATIC + JS.replace(".js", ".js.map"), None),
    (STATIC, None),
    (STATIC + ".", None),
    (STATIC + "..", None),
    (STATIC + "__init__.py", None),
    (STATIC + "../../consent_middleware/__init__.py", None),
]


@pytest.mark.parametrize(("path", "raw_path"), TRAVERSALS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_nothing_but_the_hashed_assets_is_served(path: str, raw_path: str | None, method: str) -> None:
    raw = (raw_path or path).encode("utf-8", "surrogateescape")
    messages = await drive(middleware(), http_scope(path, method, raw_path=raw))
    assert messages[0]["status"] in (400, 404)
    body = body_of(messages)
    for secret in (b"[tool.", b"root:", b"import"):
        assert secret not in body
    assert len(body) < 100


@pytest.mark.parametrize("name", [JS, CSS])
async def test_the_hashed_assets_themselves_are_served_inert(name: str) -> None:
    messages = await drive(middleware(), http_scope(STATIC + name))
    assert messages[0]["status"] == 200
    headers = headers_of(messages)
    assert headers["x-content-type-options"] == ["nosniff"]
    assert headers["content-type"][0].startswith(("text/javascript", "text/css"))
    assert (
        body_of(messages) == (ROOT / "static" / "banner" / ("banner." + name.rpartition(".")[2])).read_bytes()
    )
