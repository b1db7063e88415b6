"""The routes under ``PREFIX`` (SPEC §6): state, decisions, withdrawal, pages, static files.

Every bad input is a 4xx whose plain-text (or JSON) message names what was wrong; nothing here
raises to the server.
"""

from __future__ import annotations

import html
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

from .assets import Assets
from .config import ConsentConfig
from .cookies import CookieRules
from .csp import PAGE_POLICY
from .geo import GeoLocator
from .log import ConsentLog, NewEntry
from .privacy import device_of, truncate_ip
from .registry import NECESSARY
from .render import Renderer
from .request import Visit, query_value
from .state import METHODS, ConsentState, CookieWriter, Decision, new_consent_id

__all__ = ["MAX_BODY_BYTES", "Endpoints", "safe_next"]

logger = logging.getLogger("consent_middleware")

MAX_BODY_BYTES: Final = 16 * 1024
MAX_NEXT_CHARS: Final = 2048
MAX_FORM_FIELDS: Final = 64
DECISIONS: Final = ("accept_all", "reject_all", "custom")
FORM_TYPE: Final = "application/x-www-form-urlencoded"
JSON_TYPE: Final = "application/json"
STATIC_CACHE: Final = "public, max-age=31536000, immutable"
PAGE_CACHE: Final = "private, no-cache"
#: What every page with consent markup depends on (these pages, and the app's pages: ``pages.py``).
VARY_TOKENS: Final = ("Cookie", "Sec-GPC", "Accept-Language")
DEFAULT_PORTS: Final = {"http": ":80", "https": ":443"}
#: A CSP nonce is base64 (RFC 7636 alphabet too); anything else could break out of a header or attribute.
NONCE_PATTERN: Final = re.compile(r"[A-Za-z0-9+/_-]{8,128}={0,2}")

Handler = Callable[[Scope, Receive, Send, Visit], Awaitable[None]]


class BadRequest(Exception):
    """A client error with a message for the client; ``status`` 400, 403, 413 or 415."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _shown(value: str) -> str:
    """A client-supplied value, shortened and escaped, fit to quote in an error message."""
    short = value if len(value) <= 64 else value[:64] + "..."
    return html.escape(short.encode("unicode_escape").decode("ascii"))


def safe_next(value: str | None) -> str | None:
    """``value`` when it is a path on this site, else ``None``: never an open redirect."""
    if not value or len(value) > MAX_NEXT_CHARS or not value.startswith("/"):
        return None
    # Browsers drop tabs and newlines and read "\" as "/", which would turn "/\t/x" into "//x".
    if any(char < " " or char in "\\\x7f" for char in value) or value.startswith("//"):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


def _same_origin_path(url: str | None, origin: str) -> str | None:
    """The path (and query) of ``url`` when it is on ``origin``."""
    if not url or len(url) > MAX_NEXT_CHARS:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if _normalize_origin(f"{parts.scheme}://{parts.netloc}") != _normalize_origin(origin):
        return None
    return safe_next(parts.path + (f"?{parts.query}" if parts.query else "") or "/")


def _normalize_origin(origin: str) -> str:
    origin = origin.lower()
    for scheme, port in DEFAULT_PORTS.items():
        if origin.startswith(scheme + "://") and origin.endswith(port):
            return origin[: -len(port)]
    return origin


def check_same_origin(headers: Headers, origin: str) -> None:
    """Refuse a state-changing request made from another site (CSRF)."""
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        raise BadRequest(403, "cross-site request refused (Sec-Fetch-Site: cross-site)")
    sent_origin = headers.get("origin")
    if sent_origin is not None:
        if _normalize_origin(sent_origin.strip()) != _normalize_origin(origin):
            raise BadRequest(
                403, f"cross-origin request refused: Origin '{_shown(sent_origin)}' is not {origin}"
            )
        return
    referer = headers.get("referer")
    if referer:
        try:
            parts = urlsplit(referer)
        except ValueError:  # e.g. an unbalanced "[" in the host: not a URL on this site either
            raise BadRequest(
                403, f"cross-origin request refused: malformed Referer '{_shown(referer)}'"
            ) from None
        if _normalize_origin(f"{parts.scheme}://{parts.netloc}") != _normalize_origin(origin):
            raise BadRequest(
                403, f"cross-origin request refused: Referer '{_shown(referer)}' is not on {origin}"
            )


async def read_body(scope: Scope, receive: Receive, headers: Headers) -> bytes:
    """The request body, refusing (413) anything over ``MAX_BODY_BYTES`` without reading it all."""
    declared = headers.get("content-length", "").strip()
    # isascii: str.isdigit() also accepts "²", which int() refuses.
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BadRequest(413, f"request body too large: at most {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest(400, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(413, f"request body too large: at most {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class Submission:
    decision: str | None
    categories: tuple[str, ...]
    next: str | None
    is_json: bool


def parse_submission(body: bytes, headers: Headers) -> Submission:
    """A decision posted as a form or as JSON."""
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == JSON_TYPE:
        try:
            data = json.loads(body) if body.strip() else {}
        except (ValueError, RecursionError):
            raise BadRequest(400, "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise BadRequest(400, 'JSON body must be an object like {"decision": "accept_all"}')
        decision, categories, next_path = data.get("decision"), data.get("categories", []), data.get("next")
        if decision is not None and not isinstance(decision, str):
            raise BadRequest(400, "'decision' must be a string")
        if not isinstance(categories, list) or not all(isinstance(name, str) for name in categories):
            raise BadRequest(400, "'categories' must be a list of category names")
        if next_path is not None and not isinstance(next_path, str):
            raise BadRequest(400, "'next' must be a string")
        return Submission(decision, tuple(categories), next_path, is_json=True)
    if media_type not in (FORM_TYPE, "") or (media_type == "" and body):
        raise BadRequest(415, f"unsupported content type; send {FORM_TYPE} or {JSON_TYPE}")
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except UnicodeDecodeError:
        raise BadRequest(400, "form body is not valid UTF-8") from None
    except ValueError:
        raise BadRequest(400, f"too many form fields: at most {MAX_FORM_FIELDS}") from None
    decisions = [value for key, value in fields if key == "decision"]
    if len(set(decisions)) > 1:
        raise BadRequest(400, "several different 'decision' values; send one")
    next_values = [value for key, value in fields if key == "next"]
    return Submission(
        decisions[0] if decisions else None,
        tuple(value for key, value in fields if key == "categories"),
        next_values[0] if next_values else None,
        is_json=False,
    )


def wants_json(headers: Headers) -> bool:
    accept = headers.get("accept", "")
    return JSON_TYPE in accept and "text/html" not in accept


class Endpoints:
    """One instance per middleware; per-request data travels in the arguments only."""

    def __init__(
        self,
        *,
        config: ConsentConfig,
        cookies: CookieWriter,
        rules: CookieRules,
        renderer: Renderer,
        assets: Assets,
        geo: GeoLocator,
        log: ConsentLog | None,
    ) -> None:
        self._config = config
        self._geo = geo
        self._log = log
        self._cookies = cookies
        self._rules = rules
        self._renderer = renderer
        self._assets = assets
        self._optional = config.registry.optional_categories
        self._all_categories = tuple(category.name for category in config.categories)
        self._routes: dict[str, dict[str, Handler]] = {
            "": {"GET": self._get_state, "POST": self._post_decision},
            "/withdraw": {"POST": self._post_withdraw},
            "/preferences": {"GET": self._get_preferences},
            "/cookies": {"GET": self._get_cookies},
            "/record": {"GET": self._get_record},
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send, visit: Visit) -> None:
        route = scope["path"][len(self._config.prefix) :]
        method = scope["method"]
        if route.startswith("/static/"):
            handlers: dict[str, Handler] = {"GET": self._get_static}
        elif route in self._routes:
            handlers = self._routes[route]
        else:
            await PlainTextResponse("not found", status_code=404)(scope, receive, send)
            return
        handler = handlers.get("GET" if method == "HEAD" else method)
        if handler is None:
            allowed = ", ".join(sorted({*handlers, "HEAD"} if "GET" in handlers else handlers))
            response = PlainTextResponse(
                f"method {method} not allowed here; allowed: {allowed}",
                status_code=405,
                headers={"Allow": allowed},
            )
            await response(scope, receive, send)
            return
        try:
            await handler(scope, receive, send, visit)
        except BadRequest as error:
            await self._error(error, visit)(scope, receive, send)

    def _error(self, error: BadRequest, visit: Visit) -> Response:
        if visit.headers.get("content-type", "").startswith(JSON_TYPE) or wants_json(visit.headers):
            return JSONResponse({"error": error.message}, status_code=error.status)
        return PlainTextResponse(
            error.message, status_code=error.status, headers={"X-Content-Type-Options": "nosniff"}
        )

    def _finish(self, response: Response, visit: Visit) -> Response:
        """Add what every response of this request sets (language choice, re-signed decision)."""
        for header in self._cookies.pending(visit.verified, visit.new_language, secure=visit.peer.https):
            response.raw_headers.append((b"set-cookie", header.encode("latin-1")))
        return response

    def _next(self, requested: str | None, visit: Visit) -> str:
        return (
            safe_next(requested) or _same_origin_path(visit.headers.get("referer"), visit.peer.origin) or "/"
        )

    async def _get_state(self, scope: Scope, receive: Receive, send: Send, visit: Visit) -> None:
        response = JSONResponse(visit.state.as_json(), headers={"Cache-Control": "no-store"})
        await self._finish(response, visit)(scope, receive, send)

    async def _post_decision(self, scope: Scope, receive: Receive, send: Send, visit: Visit) -> None:
        check_same_origin(visit.headers, visit.peer.origin)
        submission = parse_submission(await read_body(scope, receive, visit.headers), visit.headers)
        if submission.decision not in DECISIONS:
            given = "nothing" if submission.decision is None else f"'{_shown(submission.decision)}'"
            raise BadRequest(400, f"unknown decision {given}; allowed: {', '.join(DECISIONS)}")
        if submission.decision == "accept_all":
            granted = frozenset(self._optional)
        elif submission.decision == "reject_all":
            granted = frozenset()
        else:
            unknown = [name for name in submission.categories if name not in self._all_categories]
            if unknown:
                raise BadRequest(
                    400,
                    f"unknown category '{_shown(unknown[0])}'; allowed: {', '.join(self._all_categories)}",
                )
            granted = frozenset(submission.categories) - {NECESSARY}
        await self._decide(scope, receive, send, visit, submission, granted, submission.decision)

    async def _post_withdraw(self, scope: Scope, receive: Receive, send: Send, visit: Visit) -> None:
        check_same_origin(visit.headers, visit.peer.origin)
        submission = parse_submission(await read_body(scope, receive, visit.headers), visit.headers)
        await self._decide(scope, receive, send, visit, submission, frozenset(), "withdraw")

    async def _decide(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        visit: Visit,
        submission: Submission,
        granted: frozenset[str],
        method: str,
    ) -> None:
        assert method in METHODS
        previous = visit.verified.decision if visit.verified else None
        decision = Decision(
            # One id per visitor across later decisions, so the log holds one history each.
            consent_id=previous.consent_id if previous else new_consent_id(),
            version=self._config.policy_version,
            categories=granted,
            decided_at=int(time.time()),
            method=method,
        )
        # Proof of consent first: a choice is confirmed only once it is durably logged (or spooled).
        if self._log is not None:
            try:
                await self._log.append(self._log_entry(decision, visit))
            except Exception as error:  # the store and the spool both failed: nothing is confirmed
                logger.error("consent-middleware: a decision could not be logged (%s)", type(error).__name__)
                raise BadRequest(
                    503, "your choice could not be recorded just now; please try again"
                ) from None
        state = ConsentState(
            decision=decision,
            all_categories=self._all_categories,
            expires_at=decision.decided_at + int(self._config.consent_max_age.total_seconds()),
            version=decision.version,
            language=visit.state.language,
            gpc=visit.state.gpc,
            security_client_ip=visit.peer.client_ip,
        )
        response: Response
        if submission.is_json or wants_json(visit.headers):
            response = JSONResponse(state.as_json(), headers={"Cache-Control": "no-store"})
        else:
            response = RedirectResponse(self._next(submission.next, visit), status_code=303)
        if visit.new_language:
            response.raw_headers.append(
                (b"set-cookie", self._cookies.language(visit.new_language, secure=visit.peer.https).encode())
            )
        response.raw_headers.append(
            (b"set-cookie", self._cookies.decision(decision, secure=visit.peer.https).encode("latin-1"))
        )
        # Withdrawing or narrowing removes what the refused categories left behind, HttpOnly ones too.
        for header in self._rules.expiring(
            visit.cookies, granted, host=visit.peer.host, secure=visit.peer.https
        ):
            response.raw_headers.append((b"set-cookie", header.encode("latin-1")))
        await response(scope, receive, send)

    def _log_entry(self, decision: Decision, visit: Visit) -> NewEntry:
        user_agent = visit.headers.get("user-agent", "")
        return NewEntry(
            consent_id=decision.consent_id,
            time=datetime.fromtimestamp(decision.decided_at, UTC),
            policy_version=decision.version,
            categories=tuple(sorted(decision.categories)),
            method=decision.method,
            language=visit.state.language,
            country=self._geo.country(visit.peer.client_ip),
            ip_truncated=truncate_ip(visit.peer.client_ip),
            ua_family=device_of(user_agent).browser if user_agent else None,
            banner_hash=self._renderer.banner_hash(visit.state.language),
            entry_id=secrets.token_hex(16),
        )

    async def _get_record(self, scope: Scope, receive: Receive, send: Send, visit: Visit) -> None:
        """The visitor's own history, by the consent id in their signed cookie: nobody else's."""
        consent_id = visit.verified.decision.consent_id if visit.verified else None
        entries = await self._log.history(consent_id) if consent_id and self._log is not None else []
        body = {
            "consent_id": consent_id,
            "entries": [
                {
                    "time": entry.time.isoformat().replace("+00:00", "Z"),
                    "method": entry.method,
                    "categories": list(entry.categories),
                    "policy_version": entry.policy_version,
                    "language": entry.language,
                    "country": entry.country,
                    "ip_truncated": entry.ip_truncated,
                    "ua_family": entry.ua_family,
                    "banner_hash": entry.banner_hash,
                    "entry_id": entry.entry_id,
                }
                for entry in entries
            ],
        }
        headers = {
            "Cache-Control": "no-store",
            "Content-Disposition": 'attachment; filename="consent-record.json"',
            "X-Content-Type-Options": "nosniff",
        }
        await self._finish(JSONResponse(body, headers=headers), visit)(scope, receive, send)

    def _page(self, body: str, visit: Visit) -> Response:
        headers = {
            "Cache-Control": PAGE_CACHE,
            "Vary": ", ".join(VARY_TOKENS),
            "Content-Language": visit.state.language,
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": PAGE_POLICY,
        }
        return self._finish(Response(body, media_type="text/html", headers=headers), visit)

    async def _get_preferences(self, scope: Scope, receive: Receive, send: Send, visit: Visit) -> None:
        state = visit.state
        granted = visit.verified.decision.categories if visit.verified else frozenset()
        body = self._renderer.preferences_page(
            language=state.language,
            next_path=self._next(query_value(scope, "next"), visit),
            granted=granted,
            gpc=state.gpc,
            nonce=nonce_of(scope, self._config.csp_nonce_key),
        )
        await self._page(body, visit)(scope, receive, send)

    async def _get_cookies(self, scope: Scope, receive: Receive, send: Send, visit: Visit) -> None:
        body = self._renderer.cookies_page(
            language=visit.state.language,
            nonce=nonce_of(scope, self._config.csp_nonce_key),
            credit=self._geo.credit,
        )
        await self._page(body, visit)(scope, receive, send)

    async def _get_static(self, scope: Scope, receive: Receive, send: Send, visit: Visit) -> None:
        # Only the exact hashed names exist: "..", encoded slashes and sub-paths all miss.
        asset = self._assets.get(scope["path"][len(self._config.prefix) + len("/static/") :])
        if asset is None:
            await PlainTextResponse("not found", status_code=404)(scope, receive, send)
            return
        if visit.headers.get("if-none-match") == asset.etag:
            response = Response(status_code=304, headers={"ETag": asset.etag, "Cache-Control": STATIC_CACHE})
        else:
            response = Response(
                asset.body,
                media_type=asset.media_type,
                headers={
                    "ETag": asset.etag,
                    "Cache-Control": STATIC_CACHE,
                    "X-Content-Type-Options": "nosniff",
                },
            )
        await response(scope, receive, send)


def nonce_of(scope: Scope, key: str) -> str | None:
    """The page's CSP nonce, when the app put a well-formed one in ``scope["state"]``."""
    state = scope.get("state")
    value = state.get(key) if isinstance(state, dict) else None
    return value if isinstance(value, str) and NONCE_PATTERN.fullmatch(value) else None
