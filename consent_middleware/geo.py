"""Country of an IP address from an MMDB file read by geoip2 (SPEC §4).

The default database is Geoacumen's Country MMDB (Apache-2.0, shipped by the ``python-geoacumen``
package), so country detection works with no licence key and no network. GeoLite2, GeoIP2 and
DB-IP country (or city) files work too. A missing or unreadable file is a warning at start-up and
geolocation is then off: the browser's languages decide. The file is re-opened when it changes on
disk (``consent-middleware geo update`` swaps it atomically), so a running app needs no restart.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Final

import geoip2.database
import geoip2.errors
import maxminddb

__all__ = ["BUNDLED_DATABASE_NAME", "GeoLocator", "bundled_database"]

logger = logging.getLogger("consent_middleware")

BUNDLED_DATABASE_NAME: Final = "Geoacumen Country (Apache-2.0, June 2024 data)"
#: Distinct client addresses remembered; an LRU so a crawl of many addresses cannot grow memory.
CACHE_SIZE: Final = 65_536
#: How often (seconds) a lookup may check whether the file was replaced.
RELOAD_CHECK_INTERVAL: Final = 10.0
COUNTRY_CODE_LENGTH: Final = 2
#: What each known database's licence asks a site to show (by a marker in its database type).
CREDITS: Final = {
    "Geoacumen": "Country detection: Geoacumen Country database (Apache-2.0).",
    "DBIP": "IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0.",
    "GeoLite2": "This product includes GeoLite2 data created by MaxMind, available from https://www.maxmind.com.",
    "GeoIP2": "Country detection: MaxMind GeoIP2.",
}


def bundled_database() -> Path | None:
    """The Geoacumen Country MMDB, if the ``python-geoacumen`` package is installed."""
    spec = importlib.util.find_spec("geoacumen")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "db" / "Geoacumen-Country.mmdb"
    return path if path.is_file() else None


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class GeoLocator:
    """Thread-safe, cached country lookups; ``country()`` never raises."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._reader: geoip2.database.Reader | None = None
        self._city = False
        self._signature: tuple[int, int, int] | None = None
        self._cache: OrderedDict[str, str | None] = OrderedDict()
        self._lock = threading.Lock()
        self._next_check = 0.0
        if path is not None:
            self._open(warn=True)

    @property
    def available(self) -> bool:
        return self._reader is not None

    @property
    def credit(self) -> str | None:
        """The database's name and licence, as its licence asks the site to show them."""
        if self._reader is None:
            return None
        database_type = self._reader.metadata().database_type
        for marker, credit in CREDITS.items():
            if marker.lower() in database_type.lower():
                return credit
        return f"Country database: {database_type}"

    def _open(self, *, warn: bool) -> None:
        assert self.path is not None
        signature = _signature(self.path)
        try:
            reader = geoip2.database.Reader(os.fspath(self.path))
            database_type = reader.metadata().database_type
            if "Country" not in database_type and "City" not in database_type:
                reader.close()
                raise ValueError(f"database type {database_type!r} has no countries")
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
            if warn:
                logger.warning(
                    "consent-middleware: geolocation is off, cannot open %s (%s); "
                    "the banner language comes from the browser",
                    self.path,
                    error,
                )
            return
        # geoip2 asks for the model that matches the file's type: City files answer city() only.
        self._city = "City" in database_type
        old, self._reader, self._signature = self._reader, reader, signature
        self._cache.clear()
        if old is not None:
            old.close()

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if self.path is None or now < self._next_check:
            return
        self._next_check = now + RELOAD_CHECK_INTERVAL
        signature = _signature(self.path)
        if signature is not None and signature != self._signature:
            self._open(warn=self._reader is None)

    def country(self, ip: str | None) -> str | None:
        """The ISO 3166-1 alpha-2 code of ``ip``'s country, or ``None`` when unknown."""
        if ip is None or self.path is None:
            return None
        with self._lock:
            self._maybe_reload()
            if ip in self._cache:
                self._cache.move_to_end(ip)
                return self._cache[ip]
            code = self._lookup(ip)
            self._cache[ip] = code
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            return code

    def _lookup(self, ip: str) -> str | None:
        if self._reader is None:
            return None
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global:
            return None
        try:
            record = self._reader.city(str(address)) if self._city else self._reader.country(str(address))
            code = record.country.iso_code
        except (geoip2.errors.AddressNotFoundError, ValueError, TypeError, maxminddb.InvalidDatabaseError):
            return None
        return code.upper() if isinstance(code, str) and len(code) == COUNTRY_CODE_LENGTH else None
