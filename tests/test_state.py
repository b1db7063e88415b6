"""The signed decision cookie: sign, verify, rotate, expire; bad cookies read as "no decision"."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer
from starlette.testclient import TestClient

from consent_middleware import ConsentMiddleware
from consent_middleware.state import COOKIE_SALT, Decision, DecisionCodec, new_consent_id
from tests.conftest import ORIGIN, SECRET, html_app

CATEGORIES = ("necessary", "preferences", "analytics", "marketing")
MAX_AGE = timedelta(days=182)


def codec(*keys: str, version: str = "1") -> DecisionCodec:
    return DecisionCodec(
        secret_keys=keys or (SECRET,), policy_version=version, max_age=MAX_AGE, categories=CATEGORIES
    )


def decision(**changes: object) -> Decision:
    fields: dict[str, object] = {
        "consent_id": new_consent_id(),
        "version": "1",
        "categories": frozenset({"analytics"}),
        "decided_at": int(time.time()),
        "method": "custom",
    }
    fields.update(changes)
    return Decision(**fields)  # type: ignore[arg-type]


def test_round_trip() -> None:
    original = decision()
    verified = codec().decode(codec().encode(original))
    assert verified is not None
    assert verified.decision == original
    assert verified.needs_rotation is False


def test_cookie_stays_small_with_every_category() -> None:
    value = codec().encode(decision(categories=frozenset(CATEGORIES) - {"necessary"}, method="accept_all"))
    assert len(value) < 700


def test_validly_signed_but_malformed_payloads_are_no_decision() -> None:
    signer = URLSafeSerializer(SECRET, salt=COOKIE_SALT)
    now = int(time.time())
    for payload in (
        [],
        {"a": 1},
        ["x" * 32, "1", [], now, 0],
        [new_consent_id(), "1", "analytics", now, 0],
        [new_consent_id(), "1", [], str(now), 0],
        [new_consent_id(), "1", [], now, 9],
        [new_consent_id(), "1", [], True, 0],
        None,
        "string",
    ):
        assert codec().decode(signer.dumps(payload)) is None, payload


def test_decision_cookie_attributes() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET))
    response = client.post(
        "/_consent", data={"decision": "reject_all"}, headers={"Origin": ORIGIN}, follow_redirects=False
    )
    attributes = [part.strip() for part in response.headers["set-cookie"].split(";")]
    assert attributes[0].startswith("consent=")
    assert "HttpOnly" in attributes
    assert "SameSite=Lax" in attributes
    assert "Path=/" in attributes
    assert f"Max-Age={int(MAX_AGE.total_seconds())}" in attributes
    assert any(part.startswith("Expires=") for part in attributes)
    assert "Secure" not in attributes


def test_cookie_is_secure_over_https() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET), base_url="https://testserver")
    response = client.post(
        "/_consent",
        data={"decision": "reject_all"},
        headers={"Origin": "https://testserver"},
        follow_redirects=False,
    )
    assert "Secure" in [part.strip() for part in response.headers["set-cookie"].split(";")]


def test_cookie_domain_option_is_used() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET, cookie_domain=".testserver"))
    response = client.post("/_consent", json={"decision": "accept_all"}, headers={"Origin": ORIGIN})
    assert "Domain=.testserver" in response.headers["set-cookie"]


@given(st.text(max_size=1200))
def test_any_text_as_a_cookie_never_raises_and_is_no_decision(value: str) -> None:
    assert codec().decode(value) is None


@given(st.binary(max_size=600))
def test_any_bytes_as_a_cookie_header_read_as_undecided(value: bytes) -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET))
    header = b"consent=" + value.replace(b"\r", b"").replace(b"\n", b"")
    response = client.get("/_consent", headers=[(b"cookie", header)])
    assert response.status_code == 200
    assert response.json()["decided"] is False


@pytest.mark.parametrize("max_age", [timedelta(days=396), 0, -5, "182d"])
def test_consent_max_age_is_bounded(max_age: object) -> None:
    with pytest.raises(ValueError, match="consent_max_age"):
        ConsentMiddleware(html_app(), secret_key=SECRET, consent_max_age=max_age)
