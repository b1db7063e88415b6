"""A small Country MMDB written for the tests (geoip2's ``country()`` needs "Country" in its type)."""

from __future__ import annotations

from pathlib import Path

from mmdb_writer import MMDBWriter
from netaddr import IPSet

#: Public ranges (the locator skips private and documentation ones), each given a country here.
NETWORKS = {
    "BE": ["81.246.0.0/16", "2a02:a03f::/32"],
    "NL": ["145.0.0.0/16"],
    "CH": ["85.0.0.0/16"],
    "US": ["8.8.8.0/24"],
    "DE": ["2a01:4f8::/32"],
}
BELGIAN_IP = "81.246.10.7"
DUTCH_IP = "145.0.3.7"
SWISS_IP = "85.0.200.9"
AMERICAN_IP = "8.8.8.8"
BELGIAN_IPV6 = "2a02:a03f:1234::7"
UNKNOWN_IP = "1.1.1.1"


def write_country_db(path: Path, networks: dict[str, list[str]] = NETWORKS) -> Path:
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="Test-Country",
        languages=["en"],
        description={"en": "consent-middleware test data"},
    )
    for code, ranges in networks.items():
        writer.insert_network(IPSet(ranges), {"country": {"iso_code": code, "names": {"en": code}}})
    writer.to_db_file(str(path))
    return path
