"""Forged and replayed consent cookies, across keys, versions, salts and sites (SECURITY.md §1).

Whatever the attacker puts in the ``consent`` cookie, it is never consent: the app is told nothing
was granted, the banner shows, Google Analytics and the iframe stay inert, nothing is re-issued.
The one cookie that is not signed with the newest key and still counts is one signed with an older
key that is still listed (rotation): it is honoured and re-signed, with the same decision and expiry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable

import pytest
from itsdangerous import TimestampSigner, URLSafeSerializer, URLSafeTimedSerializer
from starlette.testclient import TestClient

from consent_middleware.state import COOKIE_SALT
from tests.conftest import OLD_SECRET, SECRET
from tests.security.helpers import (
    GA_SCRIPT,
    MAX_AGE,
    OPTIONAL,
    SAME_ORIGIN,
    assert_consent,
    assert_no_consent,
    client,
    consent_cookie_set,
    forge,
    payload,
    set_cookies,
)

ANOTHER_SITES_SECRET = "another-site-secret-0123456789-abcdefghijkl"
UNKNOWN_KEY = "attacker-guess-0123456789-abcdefghijklmnopqrs"


def issued_cookie(secret: str, decision: str = "accept_all") -> str:
    """A real cookie, issued by a middleware holding ``secret`` to a visitor who chose ``decision``."""
    site = client(secret_key=secret, consent_log=None)
    response = site.post("/_consent", json={"decision": decision}, headers=SAME_ORIGIN)
    assert response.status_code == 200
    return str(site.cookies["consent"])


def tampered_payload() -> str:
    """This site's own cookie for a refusal, with the payload swapped for an acceptance."""
    refusal = issued_cookie(SECRET, "reject_all")
    _, _, signature = refusal.rpartition(".")
    accepted = forge(payload(), key=UNKNOWN_KEY).rpartition(".")[0]
    return f"{accepted}.{signature}"


def tampered_signature() -> str:
    # The signature's first character: all six of its bits are the signature's (the last character's
    # low bits are base64 padding, which decoding ignores: "A" and "B" there can be the same bytes).
    data, _, signature = forge(payload()).rpartition(".")
    return f"{data}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


def flipped_payload_byte() -> str:
    value = issued_cookie(SECRET, "reject_all")
    data, _, signature = value.rpartition(".")
    # A character in the middle: all six of its bits are the payload's (see tampered_signature).
    middle = len(data) // 2
    return data[:middle] + ("A" if data[middle] != "A" else "B") + data[middle + 1 :] + "." + signature


def starlette_session_cookie() -> str:
    """What Starlette's SessionMiddleware would sign with the same secret: another purpose."""
    data = base64.b64encode(json.dumps(payload()).encode())
    return TimestampSigner(SECRET).sign(data).decode()


def now() -> int:
    return int(time.time())


FORGERIES: dict[str, Callable[[], str]] = {
    "unknown-key": lambda: forge(payload(), key=UNKNOWN_KEY),
    "another-sites-real-cookie": lambda: issued_cookie(ANOTHER_SITES_SECRET),
    "key-rotated-out": lambda: forge(payload(), key=OLD_SECRET),
    "older-policy-version": lambda: forge(payload(version="0")),
    "newer-policy-version": lambda: forge(payload(version="2")),
    "expired": lambda: forge(payload(decided_at=now() - MAX_AGE - 1)),
    "expired-long-ago": lambda: forge(payload(decided_at=0)),
    "dated-in-the-future": lambda: forge(payload(decided_at=now() + 3600)),
    "dated-far-future": lambda: forge(payload(decided_at=2**40)),
    "tampered-payload-kept-signature": tampered_payload,
    "tampered-payload-byte": flipped_payload_byte,
    "tampered-signature": tampered_signature,
    "signature-stripped": lambda: forge(payload()).rpartition(".")[0],
    "empty-signature": lambda: forge(payload()).rpartition(".")[0] + ".",
    "unsigned-json": lambda: base64.urlsafe_b64encode(json.dumps(payload()).encode()).decode(),
    "plain-json": lambda: json.dumps({"decided": True, "categories": list(OPTIONAL)}),
    "default-salt": lambda: forge(payload(), salt="itsdangerous"),
    "consent-log-salt": lambda: forge(payload(), salt="consent-middleware.log.v1"),
    "starlette-session-same-secret": starlette_session_cookie,
    "timed-serializer-same-salt": lambda: URLSafeTimedSerializer(SECRET, salt=COOKIE_SALT).dumps(payload()),
    "sha256-digest": lambda: URLSafeSerializer(
        SECRET, salt=COOKIE_SALT, signer_kwargs={"digest_method": hashlib.sha256}
    ).dumps(payload()),
    "raw-key-no-derivation": lambda: URLSafeSerializer(
        SECRET, salt=COOKIE_SALT, signer_kwargs={"key_derivation": "none"}
    ).dumps(payload()),
    "key-and-salt-swapped": lambda: URLSafeSerializer(COOKIE_SALT, salt=SECRET).dumps(payload()),
    "garbage": lambda: "not-a-cookie",
}


@pytest.mark.parametrize("make", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_or_replayed_cookie_is_never_consent(make: Callable[[], str]) -> None:
    value = make()
    visitor = client(secret_key=SECRET, policy_version="1")
    visitor.cookies.set("consent", value)
    assert_no_consent(visitor)
    assert visitor.get("/_consent/record").json() == {"consent_id": None, "entries": []}


def test_forged_cookie_cannot_read_or_extend_a_real_visitors_history() -> None:
    victim = client()
    victim.post("/_consent", json={"decision": "accept_all"}, headers=SAME_ORIGIN)
    victim_id = victim.get("/_consent").json()["consent_id"]
    attacker = client()
    attacker.cookies.set("consent", forge(payload(consent_id=victim_id), key=UNKNOWN_KEY))
    assert attacker.get("/_consent/record").json() == {"consent_id": None, "entries": []}
    attacker.post("/_consent", json={"decision": "reject_all"}, headers=SAME_ORIGIN)
    assert attacker.get("/_consent").json()["consent_id"] != victim_id
    assert len(victim.get("/_consent/record").json()["entries"]) == 1


def test_a_real_cookie_from_another_site_with_the_same_policy_version_is_not_consent() -> None:
    visitor = client(secret_key=SECRET)
    visitor.cookies.set("consent", issued_cookie(ANOTHER_SITES_SECRET))
    assert_no_consent(visitor)
    # ...whereas the same visitor's cookie from this site is.
    visitor.cookies.set("consent", issued_cookie(SECRET))
    assert_consent(visitor)


def test_a_policy_version_change_voids_a_real_earlier_decision() -> None:
    first = client(policy_version="1")
    first.post("/_consent", json={"decision": "accept_all"}, headers=SAME_ORIGIN)
    second = client(policy_version="2")
    second.cookies.set("consent", first.cookies["consent"])
    assert_no_consent(second)


def test_an_old_key_still_listed_verifies_and_is_re_signed_with_the_same_decision() -> None:
    decided_at = now() - 3600
    original = payload(("analytics",), decided_at=decided_at, method=2)
    visitor = client(secret_key=[SECRET, OLD_SECRET])
    for path in ("/_consent", "/_consent/preferences", "/"):
        visitor.cookies.clear()
        visitor.cookies.set("consent", forge(original, key=OLD_SECRET))
        before = now()
        response = visitor.get(path)
        after = now()
        (cookie,) = [value for value in set_cookies(response) if value.startswith("consent=")]
        value = cookie.split(";")[0].removeprefix("consent=")
        assert URLSafeSerializer(SECRET, salt=COOKIE_SALT).loads(value) == original
        # Same expiry: re-signing never extends a decision.
        max_age = int(cookie.partition("Max-Age=")[2].partition(";")[0])
        assert decided_at + MAX_AGE - after <= max_age <= decided_at + MAX_AGE - before
    assert "decided=True granted=necessary,analytics " in response.text
    assert GA_SCRIPT in response.text
    # Re-signed: the new cookie verifies with the newest key alone, and is not re-issued again.
    rotated = client(secret_key=[SECRET, OLD_SECRET])
    rotated.cookies.set("consent", value)
    assert not consent_cookie_set(rotated.get("/"))
    newest_only = client(secret_key=SECRET)
    newest_only.cookies.set("consent", value)
    assert_consent(newest_only, ("analytics",))


def test_only_the_newest_key_signs_a_new_decision() -> None:
    visitor = client(secret_key=[SECRET, OLD_SECRET])
    visitor.post("/_consent", data={"decision": "accept_all"}, headers=SAME_ORIGIN)
    value = visitor.cookies["consent"]
    assert URLSafeSerializer(SECRET, salt=COOKIE_SALT).loads(value)[2] == sorted(OPTIONAL)
    old_only = client(secret_key=OLD_SECRET)
    old_only.cookies.set("consent", value)
    assert_no_consent(old_only)


def test_a_cookie_signed_with_the_newest_key_is_not_re_issued() -> None:
    visitor: TestClient = client(secret_key=[SECRET, OLD_SECRET])
    visitor.cookies.set("consent", forge(payload()))
    assert not consent_cookie_set(visitor.get("/"))
    assert_consent(visitor)


def test_a_signed_cookie_granting_undeclared_categories_grants_only_declared_ones() -> None:
    visitor = client()
    visitor.cookies.set("consent", forge(payload(("analytics", "spying", "necessary"))))
    assert visitor.get("/_consent").json()["categories"] == {
        "necessary": True,
        "preferences": False,
        "analytics": True,
        "marketing": False,
    }
