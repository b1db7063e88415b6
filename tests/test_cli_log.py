"""``consent-middleware log ...``: export, stats, purge, verify and report on a real SQLite log."""

from __future__ import annotations

import asyncio
import base64
import csv
import dataclasses
import io
import json
import re
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consent_middleware.cli import main, mask_url, redact
from consent_middleware.log import LogEntry, NewEntry, open_log
from consent_middleware.log.base import parse_time
from consent_middleware.report import EXPORT_FIELDS, compute_stats, export_csv
from tests.conftest import OLD_SECRET, SECRET

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALL = ("analytics", "marketing", "preferences")
SCRIPT_COUNTRY = "<script>"  # a country is at most 8 characters
SCRIPT_LANGUAGE = "<script>alert(1)</script>"


def entry(
    visitor: str,
    time: datetime,
    method: str,
    categories: Sequence[str] = (),
    *,
    country: str | None = "BE",
    language: str = "nl",
    number: int = 0,
) -> NewEntry:
    return NewEntry(
        consent_id=(visitor * 32)[:32],
        time=time,
        policy_version="2",
        categories=tuple(sorted(categories)),
        method=method,
        language=language,
        country=country,
        ip_truncated=None if number % 3 == 2 else f"81.246.{number}.0",
        ua_family=None if number % 2 else "Firefox",
        banner_hash=f"{number:064x}",
        entry_id=f"{number + 1:032x}",
    )


def fill(path: Path, entries: Sequence[NewEntry], keys: tuple[str, ...] = (SECRET,)) -> str:
    """A real log at ``path``, written as the middleware writes it."""
    url = f"sqlite:///{path}"

    async def write() -> None:
        log = open_log(url, secret_keys=keys, spool_path=path.with_suffix(".spool"))
        assert log is not None
        for item in entries:
            await log.append(item)
        await log.close()

    asyncio.run(write())
    return url


def stored(url: str, keys: tuple[str, ...] = (SECRET,)) -> list[LogEntry]:
    log = open_log(url, secret_keys=keys)
    assert log is not None
    return list(log.entries())


def day(number: int, hour: int) -> datetime:
    return datetime(2025, 3, number, hour, tzinfo=UTC)


#: Hand-counted below: five visitors over three days; "c" decided twice on the first day.
_SMALL_LOG = (
    entry("a", day(1, 10), "accept_all", ALL, country="BE", language="nl"),
    entry("b", day(1, 11), "reject_all", country="FR", language="fr"),
    entry("c", day(1, 12), "custom", ["analytics"], country="BE", language="fr"),
    entry("c", day(1, 13), "custom", ["analytics", "preferences"], country="BE", language="fr"),
    entry("a", day(2, 9), "withdraw", country="BE", language="nl"),
    entry("d", day(3, 8), "accept_all", ALL, country=None, language="en"),
    entry(
        "e", day(3, 9), "custom", ["analytics", "marketing"], country=SCRIPT_COUNTRY, language=SCRIPT_LANGUAGE
    ),
)
SMALL_LOG = tuple(dataclasses.replace(item, entry_id=f"{n + 1:032x}") for n, item in enumerate(_SMALL_LOG))


@pytest.fixture
def small_log(tmp_path: Path) -> str:
    return fill(tmp_path / "small.sqlite3", SMALL_LOG)


@pytest.fixture
def varied_log(tmp_path: Path) -> str:
    """Entries over ten days, five countries (one unknown), four languages, every method."""
    methods = [
        ("accept_all", ALL),
        ("reject_all", ()),
        ("custom", ("analytics",)),
        ("custom", ("marketing", "preferences")),
        ("withdraw", ()),
    ]
    countries = ["BE", "NL", "FR", None, "DE"]
    languages = ["nl", "fr", "de", "en"]
    entries = []
    for number in range(40):
        method, categories = methods[number % len(methods)]
        entries.append(
            entry(
                f"{number % 13:x}",
                day(1 + number // 4, number % 24) + timedelta(minutes=number),
                method,
                categories,
                country=countries[number % len(countries)],
                language=languages[number % len(languages)],
                number=number,
            )
        )
    return fill(tmp_path / "varied.sqlite3", entries)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def log_args(url: str, *, key: str = SECRET) -> list[str]:
    return ["--log", url, "--secret-key", key]


def from_record(record: dict[str, Any]) -> LogEntry:
    values = dict(record)
    values["seq"] = int(values["seq"])
    values["time"] = parse_time(values["time"])
    return LogEntry(**values)


# --- export --------------------------------------------------------------------------------------------


def test_export_csv_round_trips_every_field(
    varied_log: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.csv"
    status, _, err = run(capsys, "log", "export", *log_args(varied_log), "--output", str(output))
    assert status == 0
    assert "40 entries exported" in err
    with output.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == list(EXPORT_FIELDS)
    assert set(EXPORT_FIELDS) == {field.name for field in dataclasses.fields(LogEntry)}
    parsed = []
    for row in rows:
        record: dict[str, Any] = {name: value or None for name, value in row.items()}
        record["categories"] = tuple(row["categories"].split())
        parsed.append(from_record(record))
    assert parsed == stored(varied_log)
    assert output.stat().st_mode & 0o077 == 0  # personal data: readable by the operator only


def test_export_jsonl_round_trips_every_field(varied_log: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "log", "export", *log_args(varied_log), "--format", "jsonl")
    assert status == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert all(list(record) == list(EXPORT_FIELDS) for record in records)
    parsed = [from_record({**record, "categories": tuple(record["categories"])}) for record in records]
    assert parsed == stored(varied_log)
    assert any(entry.country is None for entry in parsed)
    assert any(entry.ua_family is None for entry in parsed)


def test_export_since_and_progress(varied_log: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(
        capsys,
        "log",
        "export",
        *log_args(varied_log),
        "--format",
        "jsonl",
        "--since",
        "2025-03-09",
        "--progress",
    )
    assert status == 0
    times = [parse_time(json.loads(line)["time"]) for line in out.splitlines()]
    assert times
    assert min(times) >= day(9, 0)
    assert len(times) == len([e for e in stored(varied_log) if e.time >= day(9, 0)])
    assert f"{len(times)} entries exported" in err


def test_export_streams() -> None:
    """Each row is written before the next entry is read: the log is never held in memory."""
    out = io.StringIO()
    seen_rows: list[int] = []

    def entries() -> Iterator[LogEntry]:
        for number in range(3):
            seen_rows.append(out.getvalue().count("\r\n"))
            item = entry("a", day(1, number), "reject_all", number=number)
            yield LogEntry(**dataclasses.asdict(item), seq=number + 1, key_id="k", prev_hmac="p", hmac="h")

    assert export_csv(entries(), out) == 3
    assert seen_rows == [1, 2, 3]  # the header, then one more row before each read


# --- stats ---------------------------------------------------------------------------------------------


def stats(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> dict[str, Any]:
    status, out, _ = run(capsys, "log", "stats", *log_args(url), "--json", *extra)
    assert status == 0
    document: dict[str, Any] = json.loads(out)
    return document


def groups(document: dict[str, Any], name: str) -> dict[Any, tuple[int, dict[str, int]]]:
    return {row[name]: (row["decisions"], row["granted"]) for row in document[f"by_{name}"]}


def counts(analytics: int, marketing: int, preferences: int) -> dict[str, int]:
    return {"analytics": analytics, "marketing": marketing, "preferences": preferences}


def test_stats_figures_for_a_hand_counted_log(small_log: str, capsys: pytest.CaptureFixture[str]) -> None:
    document = stats(capsys, small_log)
    assert document["entries"] == 7
    assert document["decisions"] == 5  # a, b, c, d, e: each visitor's latest decision
    assert document["methods"] == {"accept_all": 1, "reject_all": 1, "custom": 2, "withdraw": 1}
    assert {row["category"]: (row["granted"], row["rate"]) for row in document["by_category"]} == {
        "analytics": (3, 0.6),  # c, d, e (a withdrew)
        "marketing": (2, 0.4),  # d, e
        "preferences": (2, 0.4),  # c (latest), d
    }
    assert groups(document, "day") == {
        "2025-03-01": (3, counts(2, 1, 2)),  # a accepted all, b refused, c's later choice
        "2025-03-02": (1, counts(0, 0, 0)),  # a withdrew
        "2025-03-03": (2, counts(2, 2, 1)),
    }
    assert groups(document, "country") == {
        "BE": (2, counts(1, 0, 1)),
        "FR": (1, counts(0, 0, 0)),
        None: (1, counts(1, 1, 1)),
        SCRIPT_COUNTRY: (1, counts(1, 1, 0)),
    }
    assert groups(document, "language") == {
        "nl": (1, counts(0, 0, 0)),
        "fr": (2, counts(1, 0, 1)),
        "en": (1, counts(1, 1, 1)),
        SCRIPT_LANGUAGE: (1, counts(1, 1, 0)),
    }
    assert document["by_day"][0]["rates"] == {"analytics": 0.6667, "marketing": 0.3333, "preferences": 0.6667}
    assert document["period"]["first"] == "2025-03-01T10:00:00.000000Z"
    assert document["period"]["last"] == "2025-03-03T09:00:00.000000Z"
    assert "latest decision" in document["counting"]


def test_stats_since_and_one_breakdown(small_log: str, capsys: pytest.CaptureFixture[str]) -> None:
    document = stats(capsys, small_log, "--since", "2025-03-02", "--by", "country")
    assert document["decisions"] == 3  # a's withdrawal, d, e
    assert "by_day" not in document
    assert "by_category" not in document
    assert groups(document, "country") == {
        "BE": (1, counts(0, 0, 0)),
        None: (1, counts(1, 1, 1)),
        SCRIPT_COUNTRY: (1, counts(1, 1, 0)),
    }


def test_stats_table(small_log: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "log", "stats", *log_args(small_log))
    assert status == 0
    assert re.search(r"^analytics\s+3\s+5\s+60\.0%$", out, re.M)
    assert re.search(r"^2025-03-02\s+1\s+0\.0% \(0\)", out, re.M)
    assert re.search(r"^\(unknown\)\s+1\s+100\.0% \(1\)", out, re.M)
    assert "latest decision" in out
    status, out, _ = run(capsys, "log", "stats", *log_args(small_log), "--by", "language")
    assert "rate per language" in out
    assert "rate per country" not in out
    assert "rate per day" not in out


def test_stats_ties_go_to_the_later_entry() -> None:
    same = day(1, 10)
    first = entry("a", same, "accept_all", ALL, number=0)
    second = entry("a", same, "reject_all", number=1)
    chained = [
        LogEntry(**dataclasses.asdict(item), seq=seq, key_id="k", prev_hmac="p", hmac="h")
        for seq, item in enumerate((first, second), 1)
    ]
    result = compute_stats(chained)
    assert result.overall.decisions == 1
    assert result.overall.methods["reject_all"] == 1


# --- purge ---------------------------------------------------------------------------------------------


@pytest.fixture
def aged_log(tmp_path: Path) -> str:
    now = datetime.now(UTC)
    ages = [600, 400, 100, 1]
    return fill(
        tmp_path / "aged.sqlite3",
        [entry(f"{n:x}", now - timedelta(days=age), "reject_all", number=n) for n, age in enumerate(ages)],
    )


def ages_left(url: str) -> list[int]:
    now = datetime.now(UTC)
    return [(now - item.time).days for item in stored(url)]


def test_purge_removes_only_old_entries(aged_log: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "log", "purge", *log_args(aged_log), "--retention")
    assert status == 0
    assert out.startswith("1 entry older than 547 days")  # 182 + 365
    assert ages_left(aged_log) == [400, 100, 1]
    status, out, _ = run(capsys, "log", "purge", *log_args(aged_log), "--older-than", "365")
    assert status == 0
    assert out.startswith("1 entry older than 365 days")
    assert ages_left(aged_log) == [100, 1]
    status, out, _ = run(capsys, "log", "verify", *log_args(aged_log))
    assert status == 0
    assert out.startswith("2 entries verified")


def test_purge_refuses_to_cut_into_consent_max_age(aged_log: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "log", "purge", *log_args(aged_log), "--older-than", "30")
    assert status == 1
    assert out == ""
    assert "refusing" in err
    assert "consent_max_age (182 days)" in err
    assert len(err.splitlines()) == 1
    assert ages_left(aged_log) == [600, 400, 100, 1]


def test_purge_reads_durations_from_the_config_file(
    aged_log: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "consent.toml"
    config.write_text(
        f'consent_log = "{aged_log}"\nconsent_max_age = {30 * 86400}\nlog_retention = {90 * 86400}\n'
        f'languages = ["en", "nl"]\n'
    )
    status, _, err = run(
        capsys, "log", "purge", "--config", str(config), "--secret-key", SECRET, "--older-than", "20"
    )
    assert status == 1
    assert "consent_max_age (30 days)" in err
    status, out, _ = run(
        capsys, "log", "purge", "--config", str(config), "--secret-key", SECRET, "--retention"
    )
    assert status == 0
    assert out.startswith("3 entries older than 90 days")
    assert ages_left(aged_log) == [1]


# --- verify --------------------------------------------------------------------------------------------


def test_verify_passes_then_names_an_edited_entry(small_log: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "log", "verify", *log_args(small_log))
    assert (status, out) == (0, "7 entries verified: the chain of " + small_log + " is intact\n")
    path = small_log.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        entry_id = db.execute("SELECT entry_id FROM consent_log WHERE seq = 3").fetchone()[0]
        db.execute("UPDATE consent_log SET categories = ? WHERE seq = 3", ('["analytics","marketing"]',))
    db.close()
    status, out, err = run(capsys, "log", "verify", *log_args(small_log))
    assert status == 1
    assert f"seq 3 (entry_id {entry_id})" in out
    assert "edited" in out
    assert "FAILED" in err


def test_verify_with_rotated_keys_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = fill(tmp_path / "old.sqlite3", SMALL_LOG[:2], keys=(OLD_SECRET,))
    monkeypatch.setenv("CONSENT_LOG", url)
    monkeypatch.setenv("CONSENT_SECRET_KEY", f"{SECRET}, {OLD_SECRET}")
    status, out, _ = run(capsys, "log", "verify")
    assert status == 0
    assert out.startswith("2 entries verified")
    monkeypatch.setenv("CONSENT_SECRET_KEY", SECRET)  # the old key dropped: its entries no longer verify
    status, out, err = run(capsys, "log", "verify")
    assert status == 1
    assert "seq 1" in out
    assert "unknown key" in out
    assert SECRET not in out + err


def test_the_default_log_is_the_middlewares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    fill(Path("consent-log.sqlite3"), SMALL_LOG[:1])
    monkeypatch.setenv("CONSENT_SECRET_KEY", SECRET)
    status, out, _ = run(capsys, "log", "verify")
    assert status == 0
    assert "sqlite:///consent-log.sqlite3" in out


# --- report --------------------------------------------------------------------------------------------


def test_report_is_one_self_contained_escaped_file(
    small_log: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "report.html"
    status, _, _ = run(capsys, "log", "report", *log_args(small_log), "--output", str(output))
    assert status == 0
    page = output.read_text(encoding="utf-8")
    assert [path.name for path in tmp_path.iterdir() if path.suffix == ".html"] == ["report.html"]
    assert re.search(r'<html lang="en">', page)
    assert re.search(r"<title>[^<]+</title>", page)
    images = re.findall(r"<img\b[^>]*>", page)
    assert len(images) == 5  # per category, rates per day, decisions per day, per country, per language
    for image in images:
        source = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', image)
        assert source is not None, image[:80]
        assert base64.b64decode(source.group(1)).startswith(PNG_SIGNATURE)
        alt = re.search(r'alt="([^"]+)"', image)
        assert alt is not None
        assert len(alt.group(1)) > 20
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(|@import""", page, re.I)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;script&gt;</th>" in page
    assert "2025-03-01 to 2025-03-03" in page  # the period
    assert "<dt>Decisions counted</dt><dd>5</dd>" in page


def test_report_since_an_empty_period(
    small_log: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "empty.html"
    status, _, _ = run(
        capsys, "log", "report", *log_args(small_log), "--output", str(output), "--since", "2030-01-01"
    )
    assert status == 0
    page = output.read_text(encoding="utf-8")
    assert "No decisions in this period" in page
    assert "<img" not in page


def test_report_without_matplotlib_says_how_to_get_it(
    small_log: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    status, _, err = run(capsys, "log", "report", *log_args(small_log), "--output", str(tmp_path / "r.html"))
    assert status == 1
    assert "pip install consent-middleware[report]" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


# --- secrets and bad input -----------------------------------------------------------------------------


def test_urls_are_masked() -> None:
    assert mask_url("postgresql://app:s3cr%40t@db.example:5432/consent") == (
        "postgresql://app:***@db.example:5432/consent"
    )
    assert mask_url("postgresql://db/consent?user=app&password=s3cr3t&sslmode=require") == (
        "postgresql://db/consent?user=app&password=***&sslmode=require"
    )
    assert mask_url("sqlite:///consent-log.sqlite3") == "sqlite:///consent-log.sqlite3"
    assert mask_url("sqlite:////var/lib/consent.db") == "sqlite:////var/lib/consent.db"
    url = "postgresql://app:s3cr%40t@db/consent"
    assert redact(f"failed for {url} (password s3cr@t, key {SECRET})", url, (SECRET,)) == (
        "failed for postgresql://app:***@db/consent (password ***, key ***)"
    )


def test_a_database_password_is_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://app:hunter2-secret@127.0.0.1:1/consent?connect_timeout=2"
    status, out, err = run(capsys, "log", "verify", "--log", url, "--secret-key", SECRET)
    assert status == 1
    assert out == ""
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert "hunter2-secret" not in err
    assert SECRET not in err
    assert "app:***@127.0.0.1:1" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["log", "export", "--format", "xml"], "invalid choice: 'xml'"),
        (["log", "export", "--since", "2025-13-45"], "is not a date"),
        (["log", "stats", "--since", "yesterday"], "is not a date"),
        (["log", "stats", "--by", "browser"], "invalid choice"),
        (["log", "purge"], "one of the arguments --older-than --retention is required"),
        (["log", "purge", "--older-than", "0"], "must be positive"),
        (["log", "purge", "--older-than", "soon"], "whole number of days"),
        (["log", "purge", "--older-than", "400", "--retention"], "not allowed with"),
        (["log"], "required"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, *args)
    assert status == 2
    assert out == ""
    assert expected in err
    assert len(err.splitlines()) == 1


def test_an_unreadable_log_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"sqlite:///{tmp_path / 'none.sqlite3'}"
    status, _, err = run(capsys, "log", "stats", *log_args(missing))
    assert status == 1
    assert "no consent log at" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "none.sqlite3").exists()  # not created by looking
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 100)
    for command in ("export", "stats", "verify", "report"):
        status, out, err = run(capsys, "log", command, *log_args(f"sqlite:///{garbage}"))
        assert status == 1, command
        assert out == ""
        assert len(err.splitlines()) == 1
        assert "Traceback" not in err
        assert "not a database" in err
    status, _, err = run(capsys, "log", "stats", "--log", "mysql://root:pw@db/x", "--secret-key", SECRET)
    assert status == 1
    assert "not a consent log URL" in err
    assert ":pw@" not in err


def test_a_missing_secret_key_is_explained(
    small_log: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CONSENT_SECRET_KEY", raising=False)
    status, _, err = run(capsys, "log", "verify", "--log", small_log)
    assert status == 1
    assert "CONSENT_SECRET_KEY" in err
    assert "--secret-key" in err


def test_a_failed_export_leaves_no_partial_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"x" * 4096)
    output = tmp_path / "out.csv"
    status, _, _ = run(capsys, "log", "export", *log_args(f"sqlite:///{garbage}"), "--output", str(output))
    assert status == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["garbage.sqlite3"]


def test_csv_cells_are_never_spreadsheet_formulas(tmp_path: Path) -> None:
    hostile = dataclasses.replace(
        entry("a", datetime(2026, 11, 1, tzinfo=UTC), "accept_all", ALL),
        ua_family='=HYPERLINK("https://evil.example","x")',
    )
    url = fill(tmp_path / "log.sqlite3", [hostile])
    out = io.StringIO()
    export_csv(stored(url), out)
    assert "'=HYPERLINK" in out.getvalue()
