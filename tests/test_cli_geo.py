"""``consent-middleware geo update``: download, check, atomic swap; tested against a local server."""

from __future__ import annotations

import datetime as dt
import gzip
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from consent_middleware.cli import dbip_urls, main
from consent_middleware.geo import GeoLocator
from tests.geodata import BELGIAN_IP, write_country_db


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over ``tmp_path/www``: (base URL, folder)."""
    folder = tmp_path / "www"
    folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def test_update_swaps_in_a_gzipped_database(served: tuple[str, Path], tmp_path: Path) -> None:
    base, folder = served
    source = write_country_db(tmp_path / "src.mmdb", {"BE": ["81.246.0.0/16"], "US": ["8.8.8.0/24"]})
    (folder / "country.mmdb.gz").write_bytes(gzip.compress(source.read_bytes()))
    output = tmp_path / "live" / "country.mmdb"
    assert main(["geo", "update", "--url", f"{base}/country.mmdb.gz", "--output", str(output)]) == 0
    assert GeoLocator(output).country(BELGIAN_IP) == "BE"


def test_a_running_locator_picks_up_the_new_file(served: tuple[str, Path], tmp_path: Path) -> None:
    base, folder = served
    output = write_country_db(tmp_path / "country.mmdb", {"NL": ["81.246.0.0/16"], "US": ["8.8.8.0/24"]})
    locator = GeoLocator(output)
    assert locator.country(BELGIAN_IP) == "NL"
    write_country_db(folder / "new.mmdb", {"BE": ["81.246.0.0/16"], "US": ["8.8.8.0/24"]})
    assert main(["geo", "update", "--url", f"{base}/new.mmdb", "--output", str(output)]) == 0
    locator._next_check = 0.0  # the periodic file check is due
    assert locator.country(BELGIAN_IP) == "BE"


@pytest.mark.parametrize("content", [b"not a database", gzip.compress(b"\x00" * 4096), b"\x1f\x8bbroken"])
def test_a_bad_download_leaves_the_old_file_alone(
    served: tuple[str, Path], tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    base, folder = served
    output = write_country_db(tmp_path / "country.mmdb", {"BE": ["81.246.0.0/16"], "US": ["8.8.8.0/24"]})
    before = output.read_bytes()
    (folder / "bad.mmdb").write_bytes(content)
    assert main(["geo", "update", "--url", f"{base}/bad.mmdb", "--output", str(output)]) == 1
    assert output.read_bytes() == before
    assert "unchanged" in capsys.readouterr().err
    assert list(tmp_path.glob(".country.mmdb.*")) == []  # no temporary file left behind


def test_a_missing_file_is_a_clear_error(
    served: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, _ = served
    assert main(["geo", "update", "--url", f"{base}/none.mmdb", "--output", str(tmp_path / "x.mmdb")]) == 1
    assert "404" in capsys.readouterr().err


def test_only_http_urls_are_fetched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["geo", "update", "--url", "file:///etc/passwd", "--output", str(tmp_path / "x.mmdb")]) == 1
    assert "only http(s)" in capsys.readouterr().err


def test_dbip_monthly_file_names() -> None:
    assert dbip_urls(dt.date(2026, 1, 5)) == [
        "https://download.db-ip.com/free/dbip-country-lite-2026-01.mmdb.gz",
        "https://download.db-ip.com/free/dbip-country-lite-2025-12.mmdb.gz",
    ]
