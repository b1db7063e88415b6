"""Google Consent Mode v2: the ``default`` command placed right after ``<head>`` (SPEC §3).

It runs before any tag on the page, even one loaded at run time, so Google's tags start in the
state the visitor chose; the banner script sends the ``update`` after a choice.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Final

from .registry import Registry

__all__ = ["CONSENT_SIGNALS", "ConsentModeSnippet", "uses_google_tags"]

#: Each Consent Mode signal and the category that grants it; ``security_storage`` is always granted.
CONSENT_SIGNALS: Final[Mapping[str, str]] = {
    "ad_storage": "marketing",
    "ad_user_data": "marketing",
    "ad_personalization": "marketing",
    "analytics_storage": "analytics",
    "functionality_storage": "preferences",
    "personalization_storage": "preferences",
}
GOOGLE_TAG_HOSTS: Final = frozenset({"googletagmanager.com", "google-analytics.com", "analytics.google.com"})
NONCE_SLOT: Final = "\x00nonce\x00"


def uses_google_tags(registry: Registry) -> bool:
    """Consent Mode matters only while a service loads Google's tags."""
    return any(host in GOOGLE_TAG_HOSTS for service in registry.services for host in service.hosts)


class ConsentModeSnippet:
    """Renders the snippet once per set of granted categories; the nonce is filled in per page."""

    def __init__(self) -> None:
        self._cache: dict[frozenset[str], tuple[bytes, bytes]] = {}

    def render(self, granted: frozenset[str], nonce: str | None) -> bytes:
        parts = self._cache.get(granted)
        if parts is None:
            values = {
                signal: "granted" if category in granted else "denied"
                for signal, category in CONSENT_SIGNALS.items()
            }
            values["security_storage"] = "granted"
            script = (
                "window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}"
                f"gtag('consent','default',{json.dumps(values, separators=(',', ':'))});"
            )
            before, _, after = f"<script{NONCE_SLOT}>{script}</script>".partition(NONCE_SLOT)
            parts = (before.encode(), after.encode())
            self._cache[granted] = parts  # at most 2**categories entries
        nonce_attribute = f' nonce="{html.escape(nonce)}"'.encode() if nonce else b""
        return parts[0] + nonce_attribute + parts[1]
