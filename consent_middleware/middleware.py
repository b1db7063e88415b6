"""The ASGI entry: routes a request to the endpoints or the app, and wraps the app's ``send``."""

from __future__ import annotations

import contextlib
import json
import secrets
from pathlib import Path
from typing import Any, Final

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .assets import Assets
from .config import ConsentConfig
from .cookies import CookieRules
from .endpoints import Endpoints, nonce_of
from .log import open_log
from .pages import PageDecorator, PageResponder
from .privacy import HeaderReducer
from .registry import LANGUAGE_COOKIE_MAX_AGE
from .render import Renderer
from .request import VisitReader
from .state import CookieWriter, DecisionCodec

__all__ = ["ConsentMiddleware"]

GPC_PATH: Final = "/.well-known/gpc.json"
#: The day this implementation of Global Privacy Control support was last changed.
GPC_LAST_UPDATE: Final = "2026-11-27"
#: Server extensions that would send a file without passing its bytes through ``send``.
FILE_EXTENSIONS: Final = ("http.response.pathsend", "http.response.zerocopysend")


class ConsentMiddleware:
    """Cookie consent for any ASGI app: banner, signed decision cookie, analytics gating.

    ``secret_key`` is required; every other option has a working default (see the README).
    ``config`` may be a :class:`ConsentConfig` or the path of a TOML file of options, which the
    keyword options override.
    """

    def __init__(
        self, app: ASGIApp, /, *, config: ConsentConfig | str | Path | None = None, **options: Any
    ) -> None:
        self.app = app
        self.config = ConsentConfig.from_options(config, **options)
        config_ = self.config
        codec = DecisionCodec.for_config(config_)
        cookies = CookieWriter(
            codec=codec, domain=config_.cookie_domain, language_max_age=LANGUAGE_COOKIE_MAX_AGE
        )
        assets = Assets(url_prefix=f"{config_.prefix}/static")
        self._renderer = Renderer(
            registry=config_.registry,
            languages=config_.languages,
            default_language=config_.default_language,
            prefix=config_.prefix,
            static_urls=assets.urls,
            texts=config_.texts,
            settings_button=config_.settings_button,
        )
        rules = CookieRules(registry=config_.registry, block_unknown=config_.block_unknown_cookies)
        self._rules = rules
        self._reader = VisitReader(config=config_, codec=codec, rules=rules)
        self._cookies = cookies
        self._endpoints = Endpoints(
            config=config_,
            cookies=cookies,
            rules=rules,
            renderer=self._renderer,
            assets=assets,
            geo=self._reader.geo,
            # Opens lazily on the first decision: works with or without the ASGI lifespan.
            log=open_log(
                config_.consent_log,
                secret_keys=config_.secret_key,
                spool_path=Path(config_.log_spool) if config_.log_spool is not None else None,
            ),
        )
        self._pages = PageDecorator(config=config_, renderer=self._renderer, cookies=cookies, rules=rules)
        self._reduce_headers = HeaderReducer(
            name.encode("latin-1") for name in config_.withheld_headers
        ).reduce
        self._uses_csp = self._pages.uses_csp
        self._nonce_key = config_.csp_nonce_key
        self._exclude_paths = config_.exclude_paths
        self._prefix = config_.prefix
        self._prefix_dir = config_.prefix + "/"
        self._gpc_body = json.dumps({"gpc": True, "lastUpdate": GPC_LAST_UPDATE}).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (self._exclude_paths and scope["path"].startswith(self._exclude_paths)):
            await self.app(scope, receive, send)
            return
        if not isinstance(scope["headers"], (list, tuple)):  # any iterable, says ASGI: read it once
            scope = {**scope, "headers": list(scope["headers"])}
        visitor, fields = self._reader.read(scope)
        path: str = scope["path"]
        if path.startswith(self._prefix) and (path == self._prefix or path.startswith(self._prefix_dir)):
            await self._endpoints(scope, receive, send, self._reader.visit(scope, visitor))
            return
        if path == GPC_PATH and self.config.respect_gpc:
            response = Response(self._gpc_body, media_type="application/json")
            await response(scope, receive, send)
            return

        # The scope the app sees (inline: this runs on every request).
        scope = dict(scope)
        extensions = scope.get("extensions")
        if extensions and any(name in extensions for name in FILE_EXTENSIONS):
            # Else a FileResponse of an .html page would go straight to the socket, ungated.
            scope["extensions"] = {
                key: value for key, value in extensions.items() if key not in FILE_EXTENSIONS
            }
        client = scope.get("client")
        headers = scope["headers"]
        if visitor.device_granted:
            # Behind trusted proxies the app gets the visitor's address, not the proxy's.
            if client and visitor.client_ip and visitor.client_ip != client[0]:
                scope["client"] = (visitor.client_ip, client[1])
        else:
            scope["client"] = visitor.truncated_client if client else None
            # Before the cookie filter: ``fields`` must be these very headers' (HeaderReducer).
            scope["headers"] = self._reduce_headers(headers, fields)
        if visitor.refuses_cookies:
            if len(fields) != len(headers):  # a name repeats: maybe several Cookie headers (HTTP/2)
                scope["headers"] = self._rules.without_refused(scope["headers"], visitor.granted)
            elif visitor.app_cookie is not None:  # the visitor's one Cookie header, filtered once
                scope["headers"] = self._rules.with_cookie(
                    scope["headers"], visitor.granted, fields[b"cookie"], visitor.app_cookie
                )
        state = scope.get("state")
        # A copy, as the server's state dict is its own (copy: cheaper than dict() for a dict).
        state = scope["state"] = state.copy() if type(state) is dict else dict(state or ())
        state["consent"] = visitor.state
        if self._uses_csp and not nonce_of(scope, self._nonce_key):
            # CSP mode needs a nonce for what it injects; the app may use this one for its own scripts.
            state[self._nonce_key] = secrets.token_urlsafe(18)
        responder = PageResponder(self._pages, scope, visitor, send)
        try:
            await self.app(scope, receive, responder.send)
        except Exception:
            # An HTML page's start is held until its first body chunk: send what the app did send,
            # so the server sees the same messages as without the middleware, then let it fail.
            if responder.held is not None:
                with contextlib.suppress(Exception):
                    await responder.release()
            raise
        if responder.held is not None:
            await responder.release()
