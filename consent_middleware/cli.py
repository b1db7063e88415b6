"""Operator commands: ``consent-middleware geo update`` (and, with the consent log, ``log ...``)."""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import geoip2.database
import maxminddb

__all__ = ["main"]

#: DB-IP's free "IP to Country Lite" database (CC BY 4.0), published monthly.
DBIP_URL: Final = "https://download.db-ip.com/free/dbip-country-lite-{year:04d}-{month:02d}.mmdb.gz"
DEFAULT_OUTPUT: Final = "geoip-country.mmdb"
MAX_DOWNLOAD_BYTES: Final = 512 * 1024 * 1024
DOWNLOAD_TIMEOUT: Final = 120
GZIP_MAGIC: Final = b"\x1f\x8b"
#: Any public address: a database that cannot place it is not a country database.
PROBE_ADDRESS: Final = "8.8.8.8"


class UpdateError(Exception):
    pass


def dbip_urls(today: dt.date) -> list[str]:
    """This month's file, then last month's (the new one appears during the month)."""
    last_month = today.replace(day=1) - dt.timedelta(days=1)
    return [DBIP_URL.format(year=day.year, month=day.month) for day in (today, last_month)]


def download(url: str) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise UpdateError(f"{url}: only http(s) URLs are fetched")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:  # noqa: S310 - scheme checked
            data: bytes = response.read(MAX_DOWNLOAD_BYTES + 1)
    except (urllib.error.URLError, OSError) as error:
        raise UpdateError(f"{url}: {error}") from None
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise UpdateError(f"{url}: larger than {MAX_DOWNLOAD_BYTES} bytes")
    if data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise UpdateError(f"{url}: broken gzip data: {error}") from None
    return data


def check_database(path: Path) -> str:
    """Open the file as geoip2 will and look one address up; its type on success."""
    try:
        with geoip2.database.Reader(os.fspath(path)) as reader:
            database_type = reader.metadata().database_type
            if "Country" in database_type:
                reader.country(PROBE_ADDRESS)
            elif "City" in database_type:
                reader.city(PROBE_ADDRESS)
            else:
                raise UpdateError(f"database type {database_type!r} has no countries")
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
        raise UpdateError(f"not a usable MMDB file: {error}") from None
    except Exception as error:  # geoip2 raises AddressNotFoundError and others for odd files
        raise UpdateError(f"the database cannot answer a lookup: {error}") from None
    return database_type


def update_geo(urls: Sequence[str], output: Path) -> str:
    """Download the first URL that works, check it, and swap it in atomically."""
    errors = []
    for url in urls:
        try:
            data = download(url)
        except UpdateError as error:
            errors.append(str(error))
            continue
        output.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            database_type = check_database(Path(temporary))
            os.chmod(temporary, 0o644)
            os.replace(temporary, output)  # a running middleware sees the whole old or the whole new file
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return f"{output}: {database_type} from {url}"
    raise UpdateError("; ".join(errors))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="consent-middleware", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    geo = commands.add_parser("geo", help="the geolocation database").add_subparsers(
        dest="action", required=True
    )
    update = geo.add_parser(
        "update", help="download DB-IP's free country database (CC BY 4.0) or --url, check it, swap it in"
    )
    update.add_argument("--url", help="an MMDB (or .mmdb.gz) URL instead of DB-IP's monthly file")
    update.add_argument(
        "--output",
        type=Path,
        default=Path(DEFAULT_OUTPUT),
        help=f"where to write it (default {DEFAULT_OUTPUT})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "geo" and args.action == "update":
        urls = [args.url] if args.url else dbip_urls(dt.datetime.now(dt.UTC).date())
        try:
            print(update_geo(urls, args.output))
        except UpdateError as error:
            print(f"consent-middleware: geo update failed, {args.output} unchanged: {error}", file=sys.stderr)
            return 1
        print(f"Set geoip_database={str(args.output)!r}; running apps pick the new file up within seconds.")
        if not args.url:
            print(
                "DB-IP's licence (CC BY 4.0) asks for the credit that the cookie page shows: "
                "IP Geolocation by DB-IP."
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
