"""Country of an IP address from an MMDB file read by geoip2 (SPEC §4).

The default database is Geoacumen's Country MMDB (Apache-2.0, shipped by the ``python-geoacumen``
package), so country detection works with no licence key and no network. GeoLite2, GeoIP2 and
DB-IP country (or city) files work too. A missing, unreadable or corrupt file is a warning at
start-up (naming the file) and geolocation is then off: the browser's languages decide; requests are
served as usual. The file is re-opened when it changes on disk (``consent-middleware geo update``
swaps it atomically), so a running app needs no restart; a file that cannot be opened is warned
about once per version of it, not on every check, and a bad replacement leaves the database opened
before in use.
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
#: Distinct client addresses remembered (oldest first out), so a crawl of many addresses cannot grow memory.
CACHE_SIZE: Final = 65_536
#: How often (seconds) a lookup may check whether the file was replaced.
RELOAD_CHECK_INTERVAL: Final = 10.0
COUNTRY_CODE_LENGTH: Final = 2
IPV4: Final = 4
#: Looked up once when a file is opened: a search tree or data section that is garbage (a file cut short
#: and padded, a disk error) fails here, at start-up, rather than on every request.
PROBE_ADDRESSES: Final = ("8.8.8.8", "2001:4860:4860::8888")
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


#: Marks an address not in the cache (None is a cached "no country").
_MISS: Final = "-"


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
        self._ipv4_only = False
        self._signature: tuple[int, int, int] | None = None
        self._cache: OrderedDict[str, str | None] = OrderedDict()
        self._lock = threading.Lock()
        self._next_check = 0.0
        #: A lookup failed on the database in use (corrupt data the probe missed): warned about once.
        self._lookup_warned = False
        if path is not None:
            self._open()

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

    def _open(self) -> None:
        """Open the file (again); on failure, warn and keep what was in use (nothing, at start-up).

        The file's signature is remembered either way, so a bad file is retried (and warned about) only
        once it changes on disk.
        """
        assert self.path is not None
        self._signature = _signature(self.path)
        try:
            reader = geoip2.database.Reader(os.fspath(self.path))
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
            self._warn_unusable(error)
            return
        try:
            database_type = reader.metadata().database_type
            if "Country" not in database_type and "City" not in database_type:
                raise ValueError(f"database type {database_type!r} has no countries")
            city = "City" in database_type
            ipv4_only = reader.metadata().ip_version == IPV4
            for address in PROBE_ADDRESSES:
                self._query(reader, city, ipv4_only, address)
        except Exception as error:  # garbage in the file: whatever the reader or geoip2's model raise
            reader.close()
            self._warn_unusable(error)
            return
        # geoip2 asks for the model that matches the file's type: City files answer city() only.
        self._city, self._ipv4_only = city, ipv4_only
        old, self._reader = self._reader, reader
        self._cache.clear()
        self._lookup_warned = False
        if old is not None:
            old.close()

    def _warn_unusable(self, error: Exception) -> None:
        if self._reader is None:
            logger.warning(
                "consent-middleware: geolocation is off, cannot use the database %s (%s: %s); "
                "the banner language comes from the browser (Accept-Language), requests are served as usual",
                self.path,
                type(error).__name__,
                error,
            )
        else:
            logger.warning(
                "consent-middleware: cannot use the replaced geolocation database %s (%s: %s); "
                "the database opened before stays in use",
                self.path,
                type(error).__name__,
                error,
            )

    @staticmethod
    def _query(reader: geoip2.database.Reader, city: bool, ipv4_only: bool, address: str) -> object:
        """The country code ``reader`` holds for ``address``; ``None`` when it holds none."""
        if ipv4_only and ":" in address:  # an IPv4-only file has no IPv6 addresses (not corrupt: asked)
            return None
        try:
            record = reader.city(address) if city else reader.country(address)
        except geoip2.errors.AddressNotFoundError:
            return None
        return record.country.iso_code

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if self.path is None or now < self._next_check:
            return
        self._next_check = now + RELOAD_CHECK_INTERVAL
        signature = _signature(self.path)
        if signature is not None and signature != self._signature:
            self._open()

    def country(self, ip: str | None) -> str | None:
        """The ISO 3166-1 alpha-2 code of ``ip``'s country, or ``None`` when unknown."""
        if ip is None or self.path is None:
            return None
        if time.monotonic() < self._next_check:
            # A hit needs no lock: a dict read is atomic, and the order of hits is not kept (oldest
            # entry first out, not least recently used: cheaper on every request).
            code = self._cache.get(ip, _MISS)
            if code is not _MISS:
                return code
        with self._lock:
            self._maybe_reload()
            if ip in self._cache:
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
            code = self._query(self._reader, self._city, self._ipv4_only, str(address))
        except Exception as error:  # a corrupt part of the file: this address has no country, say so once
            if not self._lookup_warned:
                self._lookup_warned = True
                logger.warning(
                    "consent-middleware: the geolocation database %s is corrupt (%s: %s); addresses it "
                    "cannot read get no country, their banner language comes from the browser",
                    self.path,
                    type(error).__name__,
                    error,
                )
            return None
        return code.upper() if isinstance(code, str) and len(code) == COUNTRY_CODE_LENGTH else None
