"""Open redirects through ``next`` and the ``Referer`` fallback (SECURITY.md §4).

A decision posted as a form answers 303 to ``next``; the preferences page links back to it. Anything
that is not a plain path on this site becomes ``/``; a path that merely looks odd (``/%2F%2Fevil``)
may stay, since a browser resolves it on this site.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from consent_middleware.endpoints import safe_next
from tests.conftest import ORIGIN
from tests.security.helpers import SAME_ORIGIN, client

#: Each becomes "/" exactly.
REFUSED = [
    "https://evil.com/",
    "http://evil.com",
    "//evil.com",
    "///evil.com",
    "////evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    "\\/evil.com",
    "/\\/evil.com",
    "https:evil.com",
    "http:evil.com",
    "http:/evil.com",
    "https:/\\evil.com",
    "HTTPS://EVIL.COM",
    "%2F%2Fevil.com",
    "%5C%5Cevil.com",
    "evil.com",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "/\t/evil.com",
    "/\n/evil.com",
    "/\r/evil.com",
    "/\r\nSet-Cookie: x=1",
    "/\x0b/evil.com",
    "/\x0c/evil.com",
    "/\x00/evil.com",
    "/\x7f/evil.com",
    "\t//evil.com",
    " //evil.com",
    "\x00//evil.com",
    "//testserver@evil.com",
    "https://testserver@evil.com/",
    "//evil.com@testserver",
    "//evil.com/%2F..",
    "\uff0f\uff0fevil.com",
    "/" + "a" * 5000,
    "",
]

#: Odd-looking, but a path on this site: kept as is, and a browser stays here.
LOCAL = [
    "/%2F%2Fevil.com",
    "/%2f%2fevil.com",
    "/%5Cevil.com",
    "/%5C%5Cevil.com",
    "/%09/evil.com",
    "/@evil.com",
    "/.//evil.com",
    "/..//evil.com",
    "/\u2215\u2215evil.com",
    "/\uff0f\uff0fevil.com",
    "/\u3002evil.com",
    "/a?next=https://evil.com",
    "/a#//evil.com",
]


def on_site(location: str) -> bool:
    """Where a browser would go, resolving ``location`` against this site, is on this site."""
    resolved = urlsplit(urljoin(ORIGIN + "/page", location))
    return (
        resolved.scheme == "http"
        and resolved.netloc == "testserver"
        and location.startswith("/")
        and not location.startswith("//")
        and "\\" not in location
        and not any(char <= " " or "\x7f" <= char <= "\x9f" for char in location)
    )


@pytest.fixture
def visitor() -> TestClient:
    return client(consent_log=None)


def redirect(visitor: TestClient, target: str, route: str = "/_consent") -> str:
    response = visitor.post(
        route, data={"decision": "reject_all", "next": target}, headers=SAME_ORIGIN, follow_redirects=False
    )
    assert response.status_code == 303
    return str(response.headers["location"])


@pytest.mark.parametrize("route", ["/_consent", "/_consent/withdraw"])
@pytest.mark.parametrize("target", REFUSED)
def test_off_site_or_malformed_next_falls_back_to_root(visitor: TestClient, route: str, target: str) -> None:
    assert redirect(visitor, target, route) == "/"


@pytest.mark.parametrize("target", LOCAL)
def test_odd_local_next_stays_on_the_site(visitor: TestClient, target: str) -> None:
    location = redirect(visitor, target)
    assert on_site(location), location
    assert location.isascii()  # non-ASCII is percent-encoded in the header
    assert location != "/"  # kept (percent-encoded where needed), not dropped


@pytest.mark.parametrize(
    "referer",
    [
        "https://evil.com/x",
        "http://testserver//evil.com",
        "http://testserver/\\evil.com",
        "http://testserver///evil.com",
        "http://testserver/" + "a" * 5000,
    ],
)
def test_the_referer_fallback_never_leaves_the_site(visitor: TestClient, referer: str) -> None:
    response = visitor.post(
        "/_consent",
        data={"decision": "reject_all"},
        headers={"Origin": ORIGIN, "Referer": referer},
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


@pytest.mark.parametrize("target", REFUSED + LOCAL)
def test_preferences_back_link_stays_on_the_site(visitor: TestClient, target: str) -> None:
    page = visitor.get("/_consent/preferences", params={"next": target})
    assert page.status_code == 200
    back = page.text.partition('<p class="consent-links"><a href="')[2].partition('"')[0]
    assert back
    if target in REFUSED:
        assert back == "/"
    assert on_site(back.replace("&amp;", "&")), back


@given(st.text(max_size=200))
def test_safe_next_only_ever_returns_a_local_path(value: str) -> None:
    result = safe_next(value)
    assert result is None or (
        result.startswith("/")
        and not result.startswith("//")
        and "\\" not in result
        and not any(char < " " or char == "\x7f" for char in result)
    )
