"""Wrong methods on every ``PREFIX`` route: a 405 with an ``Allow`` header, and nothing done.

(SECURITY.md §4.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import drive, headers_of, http_scope
from tests.security.helpers import hashed_asset_names, middleware

pytestmark = pytest.mark.anyio

READ = "GET, HEAD"
JS, CSS = hashed_asset_names()
ROUTES = {
    "/_consent": "GET, HEAD, POST",
    "/_consent/withdraw": "POST",
    "/_consent/preferences": READ,
    "/_consent/cookies": READ,
    "/_consent/record": READ,
    f"/_consent/static/{JS}": READ,
    f"/_consent/static/{CSS}": READ,
    "/_consent/static/missing.js": READ,
}
METHODS = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "PROPFIND",
    "get",
    "FOO",
]
CASES = [
    (path, method, allow)
    for path, allow in ROUTES.items()
    for method in METHODS
    if method not in allow.split(", ")
]


@pytest.mark.parametrize(("path", "method", "allow"), CASES)
async def test_a_wrong_method_is_a_405_with_allow(path: str, method: str, allow: str) -> None:
    headers = [(b"origin", b"http://testserver"), (b"content-type", b"application/x-www-form-urlencoded")]
    messages = await drive(middleware(), http_scope(path, method, headers), b"decision=accept_all")
    assert messages[0]["status"] == 405
    found = headers_of(messages)
    assert found["allow"] == [allow]
    assert "set-cookie" not in found
    assert found["content-type"][0].startswith("text/plain")


async def test_a_wrong_method_decides_nothing() -> None:
    app = middleware()
    form = [(b"origin", b"http://testserver"), (b"content-type", b"application/x-www-form-urlencoded")]
    for method in ("PUT", "PATCH", "DELETE", "get"):
        await drive(app, http_scope("/_consent", method, form), b"decision=accept_all")
        await drive(app, http_scope("/_consent/withdraw", method, form), b"decision=accept_all")
    assert not Path("consent-log.sqlite3").exists()  # the log opens on the first decision: none came
    messages = await drive(app, http_scope("/_consent", "POST", form), b"decision=accept_all")
    assert messages[0]["status"] == 303
    assert Path("consent-log.sqlite3").exists()
