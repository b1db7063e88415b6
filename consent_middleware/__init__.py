"""Cookie consent for ASGI apps: a localized banner, a signed decision cookie, analytics gating."""

from .config import ConsentConfig
from .middleware import ConsentMiddleware
from .registry import Category, Cookie, Service

__all__ = ["Category", "ConsentConfig", "ConsentMiddleware", "Cookie", "Service"]
