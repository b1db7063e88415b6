"""What to gate in an HTML page for one set of granted categories (SPEC §3): the gating policy.

A :class:`GatePolicy` answers the rewriter's questions about one page: which category a URL, an
inline script or a ``data-consent`` marker belongs to, when that category is refused. Everything is
compiled once in :meth:`GatePolicy.build`; the middleware keeps one policy per distinct set of
granted categories, so a page pays for none of it.

Decisions where the specification is silent:

- A URL is read the way a browser reads it before loading it: leading and trailing spaces and
  control characters are dropped, tabs and newlines anywhere are removed, the scheme is
  case-insensitive, any run of ``/`` or ``\\`` may follow ``http:``/``https:`` (none too: a
  browser may read ``https:host`` as a path, gating it anyway is the safe side) or start a
  protocol-relative URL, user info and port are skipped, and the host is percent-decoded,
  lower-cased and stripped of a trailing dot. Other schemes (``data:``, ``blob:``...) and
  relative URLs have no host. The rewriter decodes character references (``&#46;``) before
  asking. Internationalized (IDNA) spellings of a host are not normalized.
- In an inline script a host counts only as a whole host name (``www.googletagmanager.com/gtm.js``
  counts; ``notgoogletagmanager.com`` and ``googletagmanager.com.evil.net`` do not), matched without
  regard to case. Google tag ids are case-sensitive, as Google writes them: ``G-``, ``GT-``,
  ``GTM-`` or ``AW-`` followed by at least 4 upper-case letters or digits, or ``UA-`` digits ``-``
  digits, each not part of a longer word. ``gtag(`` and ``ga(`` count as calls when not part of a
  longer identifier (``window.ga(`` counts, ``mega(`` does not), also with spaces before ``(``;
  ``dataLayer.push(`` counts when its argument is an object literal or ``arguments``, and the
  Google Tag Manager snippet's ``'gtm.start'`` counts as well. A minified script that happens to
  call a function named ``ga`` is therefore gated too: the operator exempts it with
  ``data-consent="necessary"``.
- ``data-consent`` values are compared after trimming spaces and lower-casing. A value that is no
  category of the registry (or is empty) is never granted. When nothing is refused the rewriter
  does not scan at all, so in that case such a value gates nothing either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote_to_bytes

from .registry import NECESSARY, Registry

__all__ = ["GOOGLE_TAG_HOST", "GatePolicy", "url_host"]

#: The host whose service owns the Google patterns of inline scripts (tag ids, ``gtag(``...).
GOOGLE_TAG_HOST: Final = "googletagmanager.com"

#: What a browser strips around a URL: C0 control characters and space.
_C0_AND_SPACE: Final = bytes(range(0x21))
_HTML_WHITESPACE: Final = b"\t\n\f\r "
#: The authority of an http(s) or protocol-relative URL (after leading spaces and controls): any
#: run of slashes and backslashes may follow the scheme, as browsers read it.
_WEB_AUTHORITY_RE: Final = re.compile(
    rb"[\x00-\x20]*+(?:[hH][tT][tT][pP][sS]?+:|(?=[/\\]{2}))[/\\]*+([^/\\?#]*+)"
)

# srcset, as the HTML spec splits it: candidates are separated by commas, a URL is a run of
# non-space bytes (trailing commas not included) and its descriptors may hold commas in parentheses.
_SRCSET_GAP_RE: Final = re.compile(rb"[\t\n\f\r ,]*+")
_SRCSET_URL_RE: Final = re.compile(rb"[^\t\n\f\r ]*+")
_SRCSET_DESCRIPTORS_RE: Final = re.compile(rb"[^,(]*+(?:\([^)]*+\)?[^,(]*+)*+")

#: Bytes that continue a host name or an identifier next to a match (so it is no whole word).
_HOST_CHARS: Final = rb"a-z0-9_-"
_ID_CHARS: Final = rb"A-Za-z0-9_$"


def _after(literal: bytes, forbidden_before: bytes) -> bytes:
    """``literal`` as a pattern that is not preceded by a byte of the class ``forbidden_before``.

    The look-behind comes after the literal, so every alternative of a pattern built from these
    starts with a literal byte and the regex engine can skip ahead to candidates in C.
    """
    escaped = re.escape(literal)
    return escaped + rb"(?<![" + forbidden_before + rb"]" + escaped + rb")"


def _host_mention(host: bytes) -> re.Pattern[bytes]:
    """Finds ``host`` (lower case) as a whole host name, itself or as a parent domain of the host
    written, in lower-cased text. It starts with the literal host, so the search runs in C at the
    speed of a substring search (an alternation of several hosts would not)."""
    return re.compile(_after(host, _HOST_CHARS) + rb"(?![" + _HOST_CHARS + rb"]|\.[" + _HOST_CHARS + rb"])")


#: Google tag ids, calls and the Tag Manager snippet's data layer config (case-sensitive). Separate
#: patterns, each starting with a literal, for the same reason.
_GOOGLE_PATTERNS: Final = tuple(
    re.compile(pattern)
    for pattern in (
        _after(b"G", _ID_CHARS + b"-") + rb"(?:TM|T)?+-[A-Z0-9]{4,}+(?![A-Za-z0-9_-])",
        _after(b"AW-", _ID_CHARS + b"-") + rb"[A-Z0-9]{4,}+(?![A-Za-z0-9_-])",
        _after(b"UA-", _ID_CHARS + b"-") + rb"[0-9]{4,12}+-[0-9]{1,4}+(?![A-Za-z0-9_-])",
        _after(b"gtag", _ID_CHARS) + rb"\s*+\(",
        _after(b"ga", _ID_CHARS) + rb"\s*+\(",
        _after(b"dataLayer", _ID_CHARS) + rb"\s*+\.\s*+push\s*+\(\s*+(?:\{|arguments(?![A-Za-z0-9_$]))",
        rb"gtm\.start(?<=[\"']gtm\.start)[\"']",
    )
)


def _srcset_urls(srcset: bytes) -> Iterator[bytes]:
    """The URLs of a ``srcset`` (or ``imagesrcset``) value."""
    end = len(srcset)
    pos = _skip(_SRCSET_GAP_RE, srcset, 0)
    while pos < end:
        url_end = _skip(_SRCSET_URL_RE, srcset, pos)
        url = srcset[pos:url_end]
        if url.endswith(b","):
            url = url.rstrip(b",")  # a candidate without descriptors
            pos = url_end
        else:
            pos = _skip(_SRCSET_DESCRIPTORS_RE, srcset, url_end)
        if url:
            yield url
        pos = _skip(_SRCSET_GAP_RE, srcset, pos)


def _skip(pattern: re.Pattern[bytes], data: bytes, pos: int) -> int:
    """Where a match of ``pattern`` (which may match nothing) at ``pos`` ends."""
    found = pattern.match(data, pos)
    return pos if found is None else found.end()


def url_host(url: bytes) -> bytes | None:
    """The lower-cased host of an ``http(s)`` or protocol-relative URL as a browser reads it; None
    for a relative URL, another scheme, or an IP-literal."""
    if b"\t" in url or b"\n" in url or b"\r" in url:
        url = url.translate(None, b"\t\n\r")
    authority = _WEB_AUTHORITY_RE.match(url)
    if authority is None:
        return None
    host = authority.group(1)
    if b"@" in host:
        host = host.rpartition(b"@")[2]
    host = host.partition(b":")[0].rstrip(_C0_AND_SPACE)
    if host.startswith(b"["):
        return None
    if b"%" in host:
        host = unquote_to_bytes(host)
    return host.lower().rstrip(b".") or None


#: Decisions memoized per policy, and the longest tag or script body memoized.
MAX_MEMO: Final = 4096
MAX_MEMO_BYTES: Final = 4096


@dataclass(frozen=True)
class GatePolicy:
    """What to gate for one set of granted categories. Build it with :meth:`build`.

    ``granted`` holds the registry's categories the visitor granted (``necessary`` always),
    ``refused`` the optional ones not granted, ``categories`` all the registry's categories.
    ``google_category`` is the category of the service declaring ``googletagmanager.com`` while it
    is refused (else None): Google tag ids and calls in inline scripts belong to it.
    """

    granted: frozenset[str]
    refused: frozenset[str]
    google_category: str | None = None
    #: Every category of the registry (a ``data-consent`` value may name anything).
    categories: frozenset[str] = frozenset()
    #: Refused hosts (lower-case ASCII) to the category of the service declaring them.
    _hosts: Mapping[bytes, str] = field(default_factory=dict, compare=False, repr=False)
    #: Whether a lower-cased start tag (tabs and newlines removed) may need a closer look.
    _tag_hint: re.Pattern[bytes] = field(default=re.compile(rb"data-consent"), compare=False, repr=False)
    #: Per refused host: the pattern finding it in a lower-cased inline script, and its category.
    _host_mentions: tuple[tuple[re.Pattern[bytes], str], ...] = field(default=(), compare=False, repr=False)
    #: Memos of this policy's decisions, by the exact bytes decided on (a site sends the same tags and
    #: inline scripts on page after page). Filled up to MAX_MEMO entries, then no longer grown.
    tag_memo: dict[bytes, tuple[int, bytes, str]] = field(default_factory=dict, compare=False, repr=False)
    _script_memo: dict[bytes, str | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, registry: Registry, granted: Iterable[str]) -> GatePolicy:
        """The policy for a visitor who granted ``granted`` (``necessary`` is always granted;
        names the registry does not know are ignored)."""
        known = {category.name for category in registry.categories}
        granted_set = frozenset(name for name in granted if name in known) | {NECESSARY}
        refused = frozenset(registry.optional_categories) - granted_set
        hosts = {
            host.encode("ascii"): service.category
            for service in registry.services
            if service.category in refused
            for host in service.hosts
        }
        google_service = registry.service_for_host(GOOGLE_TAG_HOST)
        google_category = (
            google_service.category
            if google_service is not None and google_service.category in refused
            else None
        )
        hint_parts = [re.escape(b"data-consent")]
        if hosts:
            hint_parts += [re.escape(host) for host in sorted(hosts, key=len, reverse=True)]
            # Escapes that may hide a host: percent-encoding and character references.
            hint_parts += [rb"%", rb"&(?!amp;)"]
        return cls(
            granted=granted_set,
            refused=refused,
            google_category=google_category,
            categories=frozenset(known),
            _hosts=hosts,
            _tag_hint=re.compile(b"|".join(hint_parts)),
            _host_mentions=tuple((_host_mention(host), category) for host, category in hosts.items()),
        )

    @property
    def active(self) -> bool:
        """Whether anything can be gated: a page needs scanning only then."""
        return bool(self.refused)

    def may_gate_tag(self, lowered_tag: bytes) -> bool:
        """Cheap pre-check of a start tag of an element with URLs (``lowered_tag``: lower-cased,
        tabs and newlines removed): False means no URL of it has a refused host and it has no
        ``data-consent`` attribute."""
        return self._tag_hint.search(lowered_tag) is not None

    def category_for_host(self, host: bytes) -> str | None:
        """The refused category of the service declaring ``host`` (lower case) or a parent domain."""
        hosts = self._hosts
        while host:
            category = hosts.get(host)
            if category is not None:
                return category
            host = host.partition(b".")[2]
        return None

    def category_for_url(self, url: bytes) -> str | None:
        """The category of the service whose host (or a parent domain of it) is the host of
        ``url``, when that category is refused; None for relative URLs and everything else."""
        if not self._hosts:
            return None
        host = url_host(url)
        return None if host is None else self.category_for_host(host)

    def category_for_srcset(self, srcset: bytes) -> str | None:
        """The refused category of the first URL of a ``srcset`` value that has one."""
        if not self._hosts:
            return None
        for url in _srcset_urls(srcset):
            category = self.category_for_url(url)
            if category is not None:
                return category
        return None

    def category_for_inline_script(self, body: bytes) -> str | None:
        """The refused category an inline script's ``body`` belongs to: that of a refused service
        whose host it mentions (services in registry order), else the Google category when it has
        a Google tag id, a ``gtag(``/``ga(`` call or a ``dataLayer.push`` config."""
        try:
            return self._script_memo[body]
        except KeyError:
            category = self._inline_script_category(body)
        if len(body) <= MAX_MEMO_BYTES and len(self._script_memo) < MAX_MEMO:
            self._script_memo[body] = category
        return category

    def _inline_script_category(self, body: bytes) -> str | None:
        if self._host_mentions:
            lowered = body.lower()
            for pattern, category in self._host_mentions:
                if pattern.search(lowered) is not None:
                    return category
        if self.google_category is not None:
            for pattern in _GOOGLE_PATTERNS:
                if pattern.search(body) is not None:
                    return self.google_category
        return None

    def category_for_marker(self, value: bytes) -> str | None:
        """For an element marked ``data-consent="value"``: the category it names (trimmed, lower
        case) when that is not granted, else None. A name the registry does not know is never
        granted."""
        name = value.strip(_HTML_WHITESPACE).lower().decode("latin-1")
        return None if name in self.granted else name
