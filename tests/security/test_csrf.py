"""Cross-site request forgery on every POST route (SECURITY.md §4).

What ``check_same_origin`` decides, and so what is tested here: ``Sec-Fetch-Site: cross-site`` is
refused whatever else is sent; an ``Origin`` must be this origin exactly (scheme, host, port; the
default port and letter case do not matter); without an ``Origin``, a ``Referer`` must be on this
origin; with neither, the POST is accepted (browsers always send ``Origin`` on a cross-site POST, and a
client that sends neither carries no visitor's cookies).
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.conftest import ORIGIN
from tests.security.helpers import VISITOR, client, consent_cookie_set

POST_ROUTES = ("/_consent", "/_consent/withdraw")

CROSS_SITE: dict[str, dict[str, str]] = {
    "foreign-origin": {"Origin": "https://evil.example"},
    "origin-null": {"Origin": "null"},
    "origin-empty": {"Origin": ""},
    "origin-lookalike-suffix": {"Origin": "http://testserver.evil.com"},
    "origin-lookalike-prefix": {"Origin": "http://eviltestserver"},
    "origin-lookalike-sibling": {"Origin": "http://www.testserver"},
    "origin-lookalike-trailing-dot": {"Origin": "http://testserver."},
    "origin-userinfo": {"Origin": "http://testserver@evil.com"},
    "origin-with-query": {"Origin": "http://evil.com/?http://testserver"},
    "origin-scheme-mismatch": {"Origin": "https://testserver"},
    "origin-port-mismatch": {"Origin": "http://testserver:8080"},
    "origin-https-default-port": {"Origin": "https://testserver:443"},
    "origin-other-scheme": {"Origin": "ftp://testserver"},
    "origin-no-scheme": {"Origin": "testserver"},
    "referer-foreign": {"Referer": "https://evil.example/page"},
    "referer-query-lookalike": {"Referer": "http://evil.com/?http://testserver"},
    "referer-fragment-lookalike": {"Referer": "http://evil.com/#http://testserver/"},
    "referer-path-lookalike": {"Referer": "http://evil.com/http://testserver/"},
    "referer-suffix-lookalike": {"Referer": "http://testserver.evil.com/x"},
    "referer-userinfo": {"Referer": "http://testserver@evil.com/x"},
    "referer-scheme-mismatch": {"Referer": "https://testserver/x"},
    "referer-port-mismatch": {"Referer": "http://testserver:8080/x"},
    "referer-scheme-relative": {"Referer": "//testserver/x"},
    "referer-relative": {"Referer": "/x"},
    "referer-malformed-ipv6": {"Referer": "http://[testserver/x"},
    "referer-bracketed-host": {"Referer": "http://[evil]/x"},
    "sec-fetch-site-cross-site": {"Sec-Fetch-Site": "cross-site"},
    "sec-fetch-site-upper-case": {"Sec-Fetch-Site": "CROSS-SITE"},
    "sec-fetch-site-with-same-origin": {"Sec-Fetch-Site": "cross-site", "Origin": ORIGIN},
    "sec-fetch-site-with-same-referer": {"Sec-Fetch-Site": "cross-site", "Referer": ORIGIN + "/"},
    "same-site-sibling-origin": {"Sec-Fetch-Site": "same-site", "Origin": "http://shop.testserver"},
    "foreign-origin-same-referer": {"Origin": "https://evil.example", "Referer": ORIGIN + "/x"},
    "null-origin-same-referer": {"Origin": "null", "Referer": ORIGIN + "/x"},
}

SAME_ORIGIN: dict[str, dict[str, str]] = {
    "origin": {"Origin": ORIGIN},
    "origin-default-port": {"Origin": "http://testserver:80"},
    "origin-upper-case": {"Origin": "HTTP://TESTSERVER"},
    "referer-only": {"Referer": ORIGIN + "/about"},
    "referer-default-port": {"Referer": "http://testserver:80/about"},
    "sec-fetch-site-same-origin": {"Sec-Fetch-Site": "same-origin", "Origin": ORIGIN},
    "sec-fetch-site-same-site-exact-origin": {"Sec-Fetch-Site": "same-site", "Origin": ORIGIN},
    "sec-fetch-site-none": {"Sec-Fetch-Site": "none", "Origin": ORIGIN},
    # No Origin and no Referer: accepted on purpose (README "Decisions taken where the spec is silent").
    "neither-origin-nor-referer": {},
}


@pytest.fixture
def visitor() -> TestClient:
    return client(consent_log=None)


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("headers", CROSS_SITE.values(), ids=CROSS_SITE.keys())
def test_cross_site_post_is_refused(visitor: TestClient, route: str, headers: dict[str, str]) -> None:
    for body in ({"data": {"decision": "accept_all"}}, {"json": {"decision": "accept_all"}}):
        response = visitor.post(route, headers=headers, follow_redirects=False, **body)  # type: ignore[arg-type]
        assert response.status_code == 403, response.text
        assert "refused" in response.text
        assert not consent_cookie_set(response)
        assert "location" not in response.headers
    assert visitor.get("/_consent").json()["decided"] is False


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("headers", SAME_ORIGIN.values(), ids=SAME_ORIGIN.keys())
def test_same_origin_post_is_accepted(visitor: TestClient, route: str, headers: dict[str, str]) -> None:
    response = visitor.post(route, data={"decision": "accept_all"}, headers=headers, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert consent_cookie_set(response)


def test_a_refused_withdrawal_keeps_the_visitors_decision() -> None:
    visitor = client(consent_log=None)
    visitor.post("/_consent", data={"decision": "accept_all"}, headers={"Origin": ORIGIN})
    response = visitor.post("/_consent/withdraw", headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert visitor.get("/_consent").json()["categories"]["analytics"] is True


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data; boundary=x"])
def test_the_other_cross_site_form_encodings_decide_nothing(visitor: TestClient, content_type: str) -> None:
    """A cross-site ``<form enctype=...>`` that somehow lost its Origin still cannot decide."""
    response = visitor.post(
        "/_consent", content=b"decision=accept_all", headers={"Content-Type": content_type}
    )
    assert response.status_code == 415
    assert not consent_cookie_set(response)


def test_untrusted_forwarded_host_cannot_make_a_foreign_origin_look_same_origin() -> None:
    visitor = client(consent_log=None)  # no trusted_proxies: X-Forwarded-* are not believed
    spoofed = {
        "Origin": "https://evil.example",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
    }
    response = visitor.post("/_consent", data={"decision": "accept_all"}, headers=spoofed)
    assert response.status_code == 403
    forwarded = {"Origin": "https://evil.example", "Forwarded": "proto=https;host=evil.example"}
    assert visitor.post("/_consent", data={"decision": "accept_all"}, headers=forwarded).status_code == 403


def test_trusted_proxy_supplies_the_public_origin() -> None:
    visitor = TestClient(client(consent_log=None, trusted_proxies=[VISITOR[0]]).app, client=VISITOR)
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "www.example.com"}
    ok = visitor.post(
        "/_consent",
        data={"decision": "accept_all"},
        headers={**proxied, "Origin": "https://www.example.com"},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    for origin in (ORIGIN, "http://www.example.com", "https://evil.example"):
        refused = visitor.post(
            "/_consent", data={"decision": "accept_all"}, headers={**proxied, "Origin": origin}
        )
        assert refused.status_code == 403, origin
