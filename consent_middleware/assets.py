"""The banner's script and stylesheet, served under content-hashed names with a long cache."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["Asset", "Assets"]

ASSET_FILES: Final = {"banner.js": "text/javascript; charset=utf-8", "banner.css": "text/css; charset=utf-8"}
HASH_LENGTH: Final = 12


def _asset_dir() -> Path:
    """Inside the wheel the files sit in the package; in a source checkout, beside it."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "static" / "banner", package.parent / "static" / "banner"):
        if (candidate / "banner.js").is_file():
            return candidate
    raise RuntimeError(f"consent-middleware is installed without its banner assets (looked in {package})")


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


class Assets:
    """Reads the files once; only the exact hashed names are served, so no path reaches the disk."""

    def __init__(self, *, url_prefix: str) -> None:
        directory = _asset_dir()
        self._by_name: dict[str, Asset] = {}
        self.urls: dict[str, str] = {}
        for filename, media_type in ASSET_FILES.items():
            body = (directory / filename).read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:HASH_LENGTH]
            stem, _, extension = filename.rpartition(".")
            hashed = f"{stem}.{digest}.{extension}"
            self._by_name[hashed] = Asset(body, media_type, f'"{digest}"')
            self.urls[filename] = f"{url_prefix}/{hashed}"

    def get(self, name: str) -> Asset | None:
        return self._by_name.get(name)
