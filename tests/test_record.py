"""Proof of consent through the endpoints: every decision logged before it is confirmed, and the
visitor's own history at PREFIX/record."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from consent_middleware import ConsentMiddleware
from tests.conftest import ORIGIN, SECRET, html_app
from tests.geodata import BELGIAN_IP, write_country_db

SAME_ORIGIN = {"Origin": ORIGIN}
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def test_every_decision_is_in_the_visitors_record(tmp_path: Path) -> None:
    app = ConsentMiddleware(
        html_app(),
        secret_key=SECRET,
        consent_log=f"sqlite:///{tmp_path}/log.sqlite3",
        geoip_database=write_country_db(tmp_path / "c.mmdb"),
    )
    client = TestClient(app, client=(BELGIAN_IP, 1234), headers={"User-Agent": FIREFOX})
    client.post("/_consent", json={"decision": "accept_all"}, headers=SAME_ORIGIN)
    client.post("/_consent", json={"decision": "custom", "categories": ["analytics"]}, headers=SAME_ORIGIN)
    client.post("/_consent/withdraw", json={}, headers=SAME_ORIGIN)
    response = client.get("/_consent/record", headers={"Accept-Language": "nl"})
    assert response.headers["content-disposition"] == 'attachment; filename="consent-record.json"'
    assert response.headers["cache-control"] == "no-store"
    record = response.json()
    assert record["consent_id"] == client.get("/_consent").json()["consent_id"]
    assert [entry["method"] for entry in record["entries"]] == ["accept_all", "custom", "withdraw"]
    assert [entry["categories"] for entry in record["entries"]] == [
        ["analytics", "marketing", "preferences"],
        ["analytics"],
        [],
    ]
    first = record["entries"][0]
    assert first["policy_version"] == "1"
    assert first["country"] == "BE"
    assert first["ip_truncated"] == "81.246.10.0"  # never the full address
    assert first["ua_family"] == "Firefox"
    assert first["language"] == "nl"  # Belgian IP, no browser preference: the most spoken language
    assert len(first["banner_hash"]) == 64
    assert first["time"].endswith("Z")


def test_banner_hash_names_the_texts_shown(tmp_path: Path) -> None:
    app = ConsentMiddleware(html_app(), secret_key=SECRET)
    client = TestClient(app)
    client.post("/_consent?lang=nl", json={"decision": "reject_all"}, headers=SAME_ORIGIN)
    entry = client.get("/_consent/record").json()["entries"][0]
    assert entry["banner_hash"] == app._renderer.banner_hash("nl")
    assert app._renderer.banner_hash("nl") != app._renderer.banner_hash("en")


def test_a_refusal_is_logged_like_an_acceptance() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET))
    client.post("/_consent", data={"decision": "reject_all"}, headers=SAME_ORIGIN, follow_redirects=False)
    assert [e["method"] for e in client.get("/_consent/record").json()["entries"]] == ["reject_all"]


def test_no_one_sees_another_visitors_history() -> None:
    app = ConsentMiddleware(html_app(), secret_key=SECRET)
    alice, bob = TestClient(app), TestClient(app)
    alice.post("/_consent", json={"decision": "accept_all"}, headers=SAME_ORIGIN)
    bob.post("/_consent", json={"decision": "reject_all"}, headers=SAME_ORIGIN)
    alice_record = alice.get("/_consent/record").json()
    assert [e["method"] for e in alice_record["entries"]] == ["accept_all"]
    assert alice_record["consent_id"] != bob.get("/_consent/record").json()["consent_id"]


def test_a_visitor_without_a_decision_has_an_empty_record() -> None:
    record = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET)).get("/_consent/record").json()
    assert record == {"consent_id": None, "entries": []}


def test_a_forged_cookie_reads_no_history() -> None:
    app = ConsentMiddleware(html_app(), secret_key=SECRET)
    client = TestClient(app)
    client.post("/_consent", json={"decision": "accept_all"}, headers=SAME_ORIGIN)
    forger = TestClient(app, cookies={"consent": client.cookies["consent"][:-2] + "xx"})
    assert forger.get("/_consent/record").json() == {"consent_id": None, "entries": []}


def test_decisions_work_without_a_log() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET, consent_log=None))
    assert client.post("/_consent", json={"decision": "accept_all"}, headers=SAME_ORIGIN).status_code == 200
    assert client.get("/_consent/record").json()["entries"] == []


def test_the_default_log_is_an_sqlite_file_in_the_working_directory() -> None:
    client = TestClient(ConsentMiddleware(html_app(), secret_key=SECRET))
    client.post("/_consent", json={"decision": "accept_all"}, headers=SAME_ORIGIN)
    assert Path("consent-log.sqlite3").is_file()


def test_an_unloggable_decision_is_a_503_and_is_not_confirmed(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    app = ConsentMiddleware(
        html_app(),
        secret_key=SECRET,
        consent_log=f"sqlite:///{blocker}/log.sqlite3",
        log_spool=blocker / "spool",
    )
    client = TestClient(app)
    response = client.post("/_consent", json={"decision": "accept_all"}, headers=SAME_ORIGIN)
    assert response.status_code == 503
    assert "could not be recorded" in response.json()["error"]
    assert "set-cookie" not in response.headers
    assert client.get("/_consent").json()["decided"] is False
