"""The consent cookie (sign, verify, rotate, expire) and the state the app reads (SPEC §2).

The cookie holds only: consent id, policy version, granted categories, decision time, method.
Anything that does not verify, parse, fit the schema, or belong to the current policy version
reads as "no decision"; decoding never raises.
"""

from __future__ import annotations

import functools
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, Protocol

from itsdangerous import BadData, URLSafeSerializer

from .registry import CONSENT_COOKIE, LANGUAGE_COOKIE, NECESSARY

if TYPE_CHECKING:
    from .config import ConsentConfig

__all__ = [
    "METHODS",
    "ConsentState",
    "CookieWriter",
    "Decision",
    "DecisionCodec",
    "cookie_header",
    "new_consent_id",
]

METHODS: Final = ("accept_all", "reject_all", "custom", "withdraw")
#: itsdangerous salt: a signature made for another purpose never verifies as a decision.
COOKIE_SALT: Final = "consent-middleware.decision.v1"
#: Longer values are not even verified (the cookies we write stay far below this).
MAX_COOKIE_LENGTH: Final = 1024
#: A decision dated this far in the future is forged or from a broken clock.
CLOCK_SKEW: Final = 300
CONSENT_ID_PATTERN: Final = re.compile(r"[0-9a-f]{32}")
#: What DecisionCodec.encode writes: URL-safe base64 parts joined by dots (a leading dot: compressed).
COOKIE_VALUE: Final = re.compile(r"\.?[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)+")
#: Verified cookie values kept per codec (each at most MAX_COOKIE_LENGTH: about 1 MiB in all).
MAX_VERIFIED_CACHED: Final = 1024


def new_consent_id() -> str:
    """A random 128-bit consent id."""
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the visitor chose, as stored in the signed cookie."""

    consent_id: str
    version: str
    categories: frozenset[str]
    decided_at: int
    method: str


@dataclass(frozen=True, slots=True)
class VerifiedDecision:
    decision: Decision
    #: True when an older key verified it: the response re-signs it with the newest key.
    needs_rotation: bool


class DecisionCodec:
    """Signs decisions with the newest key; verifies with any listed key (rotation)."""

    def __init__(
        self,
        *,
        secret_keys: tuple[str, ...],
        policy_version: str,
        max_age: timedelta,
        categories: tuple[str, ...],
    ) -> None:
        # itsdangerous wants keys oldest first and signs with the last one.
        self._newest = URLSafeSerializer(secret_keys[0], salt=COOKIE_SALT)
        self._all = URLSafeSerializer(list(reversed(secret_keys)), salt=COOKIE_SALT)
        self._version = policy_version
        self._max_age = int(max_age.total_seconds())
        self._categories = frozenset(categories) - {NECESSARY}
        # Cookie value -> what verifying it gave (time window aside): a returning visitor sends the
        # same value on every request, and HMAC plus JSON is most of reading a request.
        self._verified: dict[str, VerifiedDecision | None] = {}

    @classmethod
    def for_config(cls, config: ConsentConfig) -> DecisionCodec:
        """The codec a middleware configured with ``config`` uses (keys, policy version, lifetime,
        categories)."""
        return cls(
            secret_keys=config.secret_key,
            policy_version=config.policy_version,
            max_age=config.consent_max_age,
            categories=tuple(category.name for category in config.categories),
        )

    @property
    def max_age(self) -> int:
        return self._max_age

    def encode(self, decision: Decision) -> str:
        payload = [
            decision.consent_id,
            decision.version,
            sorted(decision.categories),
            decision.decided_at,
            METHODS.index(decision.method),
        ]
        return self._newest.dumps(payload)

    def decode(self, value: str | None, now: float | None = None) -> VerifiedDecision | None:
        """The decision in a cookie value, or ``None`` for anything not a valid, live decision."""
        if not value or len(value) > MAX_COOKIE_LENGTH:
            return None
        try:
            verified = self._verified[value]
        except KeyError:
            verified = self._verify(value)
            if len(self._verified) >= MAX_VERIFIED_CACHED:
                # Oldest first out: a flood of forged values only ever costs one verification each.
                self._verified.pop(next(iter(self._verified), ""), None)
            self._verified[value] = verified
        if verified is None:
            return None
        # The signature and the schema are cached by value; the time window is checked every time.
        valid_from, valid_until = self.window(verified.decision)
        current = time.time() if now is None else now
        if not valid_from <= current < valid_until:
            return None
        return verified

    def window(self, decision: Decision) -> tuple[float, float]:
        """When a cookie holding ``decision`` is live: from its time (less the clock skew allowed)
        until it expires (floats: they are compared with ``time.time()`` on every request)."""
        return float(decision.decided_at - CLOCK_SKEW), float(decision.decided_at + self._max_age)

    def _verify(self, value: str) -> VerifiedDecision | None:
        if not COOKIE_VALUE.fullmatch(value):
            # itsdangerous would drop other characters before checking: only the exact bytes signed
            # are a decision, so a value dressed up with extra characters is none.
            return None
        rotated = False
        try:
            payload = self._newest.loads(value)
        except BadData:
            try:
                payload = self._all.loads(value)
            except BadData:
                return None
            rotated = True
        except Exception:  # a signed but undecodable payload (itsdangerous raises plain errors)
            return None
        decision = self._parse(payload)
        return None if decision is None else VerifiedDecision(decision, rotated)

    def _parse(self, payload: object) -> Decision | None:
        if not isinstance(payload, list) or len(payload) != 5:
            return None
        consent_id, version, categories, decided_at, method = payload
        if not (
            isinstance(consent_id, str)
            and CONSENT_ID_PATTERN.fullmatch(consent_id)
            and version == self._version
            and isinstance(categories, list)
            and all(isinstance(name, str) for name in categories)
            and isinstance(decided_at, int)
            and not isinstance(decided_at, bool)
            and isinstance(method, int)
            and not isinstance(method, bool)
            and 0 <= method < len(METHODS)
        ):
            return None
        # A category the operator has since removed is simply no longer granted.
        granted = frozenset(categories) & self._categories
        return Decision(consent_id, self._version, granted, decided_at, METHODS[method])

    def expires_at(self, decision: Decision) -> int:
        return decision.decided_at + self._max_age


class DeviceSource(Protocol):
    """Works out a granted visitor's device data on first read (long-lived: no reference back to the
    request, so a request's objects form no cycle and are freed as soon as it ends)."""

    def parsed_device(self, user_agent: bytes) -> object: ...

    def country(self, ip: str | None) -> str | None: ...


class ConsentState:
    """``request.state.consent``: what the visitor has decided, for the app to read.

    Device data and the full IP (``device``, ``client_ip``, ``country``) are ``None`` until the
    device category is granted; ``security_client_ip`` is the true address, for security use only.
    ``language``, ``device`` and ``country`` are worked out on first read: a request that never
    reads them (a JSON route, say) never pays for them.
    """

    __slots__ = (
        "_all_categories",
        "_client_ip",
        "_country",
        "_decision",
        "_device",
        "_expires_at",
        "_gpc",
        "_language",
        "_security_client_ip",
        "_source",
        "_user_agent",
        "_version",
    )
    _device: object
    _client_ip: str | None
    _country: str | None
    _source: DeviceSource
    _user_agent: bytes

    def __init__(
        self,
        decision: Decision | None,
        all_categories: tuple[str, ...],
        expires_at: int | None,
        version: str,
        language: str | Callable[[], str],
        gpc: bool,
        security_client_ip: str | None,
    ) -> None:
        # Few attributes set here, the rest derived on read: one per visitor (request.Visitor), shared
        # by its requests, and one per decision the endpoints confirm.
        self._decision = decision
        self._all_categories = all_categories
        self._version = version
        self._language = language
        self._gpc = gpc
        self._expires_at = expires_at
        self._security_client_ip = security_client_ip
        # _source and _client_ip: set by reveal_device once the device category is granted; unset
        # (read as None) until then. _device and _country: from the source, on first read.

    # Read-only: one state serves every request of a visitor (request.Visitor).
    @property
    def decision(self) -> Decision | None:
        return self._decision

    @property
    def version(self) -> str:
        """The policy version in force."""
        return self._version

    @property
    def gpc(self) -> bool:
        """Whether the browser sent a Global Privacy Control signal (and the site respects it)."""
        return self._gpc

    @property
    def security_client_ip(self) -> str | None:
        """The true client address, for security use only (rate limits, abuse), before any consent."""
        return self._security_client_ip

    @property
    def decided(self) -> bool:
        return self._decision is not None

    @property
    def consent_id(self) -> str | None:
        return self._decision.consent_id if self._decision else None

    @property
    def categories(self) -> Mapping[str, bool]:
        """Every category by name: granted or not (``necessary`` always is)."""
        granted = self._decision.categories if self._decision else frozenset()
        return _categories_view(self._all_categories, granted)

    @property
    def language(self) -> str:
        language = self._language
        if callable(language):
            language = self._language = language()
        return language

    @property
    def expires_at(self) -> datetime | None:
        return datetime.fromtimestamp(self._expires_at, UTC) if self._expires_at is not None else None

    @property
    def device(self) -> object | None:
        """The parsed user agent (``privacy.Device``), once the device category is granted."""
        try:
            return self._device
        except AttributeError:
            pass
        try:
            source = self._source
        except AttributeError:
            return None
        self._device = device = source.parsed_device(self._user_agent)
        return device

    @property
    def client_ip(self) -> str | None:
        """The full client address, once the device category is granted."""
        try:
            return self._client_ip
        except AttributeError:
            return None

    @property
    def country(self) -> str | None:
        """The visitor's country (ISO 3166 code), once the device category is granted."""
        try:
            return self._country
        except AttributeError:
            pass
        try:
            source = self._source
        except AttributeError:
            return None
        self._country = country = source.country(self._client_ip)
        return country

    def reveal_device(self, source: DeviceSource, user_agent: bytes, client_ip: str | None) -> None:
        """The device category is granted: the app may read the device, the full IP and the country
        (the device and the country are worked out by ``source`` when first read)."""
        self._source = source
        self._user_agent = user_agent
        self._client_ip = client_ip

    def granted(self, category: str) -> bool:
        """Whether the visitor has granted ``category`` (``necessary`` always is)."""
        return category == NECESSARY or (self._decision is not None and category in self._decision.categories)

    def as_json(self) -> dict[str, object]:
        """The body of ``GET PREFIX`` (SPEC §6)."""
        expires_at = self.expires_at
        return {
            "consent_id": self.consent_id,
            "version": self.version,
            "decided": self.decided,
            "categories": dict(self.categories),
            "language": self.language,
            "expires_at": expires_at.isoformat().replace("+00:00", "Z") if expires_at else None,
            "gpc": self.gpc,
            "method": self.decision.method if self.decision else None,
        }

    def __repr__(self) -> str:
        granted = ",".join(name for name, on in self.categories.items() if on)
        return f"<ConsentState decided={self.decided} granted={granted} language={self.language}>"


@functools.lru_cache(maxsize=256)
def _categories_view(all_categories: tuple[str, ...], granted: frozenset[str]) -> Mapping[str, bool]:
    """``ConsentState.categories``, shared read-only between requests with the same decision."""
    return MappingProxyType({name: name == NECESSARY or name in granted for name in all_categories})


def cookie_header(
    name: str,
    value: str,
    *,
    max_age: int,
    secure: bool,
    domain: str | None,
    http_only: bool = True,
    now: float | None = None,
) -> str:
    """A ``Set-Cookie`` value: ``Max-Age`` and ``Expires`` (old browsers), ``Path=/``, ``SameSite=Lax``."""
    expires = formatdate((time.time() if now is None else now) + max_age, usegmt=True)
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", f"Expires={expires}", "SameSite=Lax"]
    if domain:
        parts.append(f"Domain={domain}")
    if secure:
        parts.append("Secure")
    if http_only:
        parts.append("HttpOnly")
    return "; ".join(parts)


class CookieWriter:
    """The middleware's own ``Set-Cookie`` values: the decision and the language choice."""

    def __init__(self, *, codec: DecisionCodec, domain: str | None, language_max_age: int) -> None:
        self._codec = codec
        self._domain = domain
        self._language_max_age = language_max_age

    def decision(self, decision: Decision, *, secure: bool, now: float | None = None) -> str:
        """The cookie for ``decision``, living until the decision expires."""
        current = time.time() if now is None else now
        remaining = max(0, self._codec.expires_at(decision) - int(current))
        return cookie_header(
            CONSENT_COOKIE,
            self._codec.encode(decision),
            max_age=remaining,
            secure=secure,
            domain=self._domain,
            now=current,
        )

    def language(self, code: str, *, secure: bool) -> str:
        return cookie_header(
            LANGUAGE_COOKIE, code, max_age=self._language_max_age, secure=secure, domain=self._domain
        )

    def pending(
        self, verified: VerifiedDecision | None, new_language: str | None, *, secure: bool
    ) -> list[str]:
        """What any response to this request should set: a remembered language, a re-signed decision."""
        headers = []
        if new_language:
            headers.append(self.language(new_language, secure=secure))
        if verified is not None and verified.needs_rotation:
            headers.append(self.decision(verified.decision, secure=secure))
        return headers
