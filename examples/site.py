"""A sample company website behind ConsentMiddleware: ``uvicorn examples.site:app``.

It needs no environment: the secret comes from ``CONSENT_SECRET_KEY`` or is generated once and
kept in ``examples/.dev-secret`` (fine for a demo; production sets the variable).
"""

from __future__ import annotations

import html
import os
import secrets
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from consent_middleware import ConsentMiddleware, Cookie, Service

SECRET_FILE = Path(__file__).with_name(".dev-secret")
GA_MEASUREMENT_ID = "G-DEMO123456"

GA_TAG = f"""<script async src="https://www.googletagmanager.com/gtag/js?id={GA_MEASUREMENT_ID}"></script>
<script>
  window.dataLayer = window.dataLayer || [];
  function gtag(){{dataLayer.push(arguments);}}
  gtag('js', new Date());
  gtag('config', '{GA_MEASUREMENT_ID}');
</script>"""

YOUTUBE = Service(
    name="youtube",
    category="marketing",
    provider="Google Ireland Limited",
    label="YouTube",
    purpose={
        "en": "Plays embedded videos; YouTube may set cookies to track viewing.",
        "nl": "Speelt ingesloten video's af; YouTube kan cookies plaatsen om het kijkgedrag te volgen.",
    },
    hosts=("youtube.com", "youtube-nocookie.com", "ytimg.com"),
    cookies=(Cookie("VISITOR_INFO1_LIVE", provider="Google", max_age=180 * 24 * 3600), Cookie("YSC")),
)

STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; color: #1d232b; }
header { background: #0b3d5c; color: #fff; padding: 1rem 2rem; display: flex; gap: 2rem; }
header a { color: #fff; } main { max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
label { display: block; margin-top: .75rem; } input, textarea { width: 100%; font: inherit; }
"""


def dev_secret() -> str:
    """``CONSENT_SECRET_KEY``, else a generated secret kept beside this file."""
    configured = os.environ.get("CONSENT_SECRET_KEY")
    if configured:
        return configured
    try:
        return SECRET_FILE.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        secret = secrets.token_urlsafe(48)
        SECRET_FILE.write_text(secret + "\n", encoding="utf-8")
        SECRET_FILE.chmod(0o600)
        return secret


def page(title: str, content: str, *, analytics: bool = True) -> HTMLResponse:
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · Brightlane Software</title>
<style>{STYLE}</style>
{GA_TAG if analytics else ""}
</head>
<body>
<header><strong>Brightlane Software</strong>
<nav><a href="/">Home</a> · <a href="/about">About</a> · <a href="/video">Video</a> ·
<a href="/contact">Contact</a></nav>
</header>
<main>
{content}
</main>
</body>
</html>
"""
    )


async def home(request: Request) -> Response:
    return page(
        "Home",
        "<h1>Software, built in Ghent</h1>"
        "<p>We build planning software for Belgian hospitals and logistics companies.</p>"
        "<p>This page carries a Google Analytics tag, which runs only after you allow analytics.</p>",
    )


async def about(request: Request) -> Response:
    return page(
        "About",
        "<h1>About us</h1><p>Twenty engineers in Ghent, Brussels and Liège, working in Dutch, "
        "French, German and English.</p>",
    )


async def video(request: Request) -> Response:
    return page(
        "Video",
        "<h1>Our product in two minutes</h1>"
        '<iframe width="560" height="315" src="https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ" '
        'title="Product video" allowfullscreen></iframe>',
    )


async def contact(request: Request) -> Response:
    if request.method == "POST":
        form = await request.form()
        name = str(form.get("name", "")).strip() or "there"
        return page(
            "Thank you", f"<h1>Thank you, {html.escape(name)}</h1><p>We will answer within a day.</p>"
        )
    return page(
        "Contact",
        """<h1>Contact</h1>
<form method="post" action="/contact">
<label>Name <input name="name" autocomplete="name"></label>
<label>Email <input name="email" type="email" autocomplete="email"></label>
<label>Message <textarea name="message" rows="5"></textarea></label>
<p><button type="submit">Send</button></p>
</form>""",
    )


async def favicon(request: Request) -> Response:
    return Response(status_code=204)


app = Starlette(
    routes=[
        Route("/", home),
        Route("/about", about),
        Route("/video", video),
        Route("/contact", contact, methods=["GET", "POST"]),
        Route("/favicon.ico", favicon),
    ],
    middleware=[
        Middleware(
            ConsentMiddleware,
            secret_key=dev_secret(),
            services=["google-analytics", YOUTUBE],
            consent_log="sqlite:///consent-log.sqlite3",
        )
    ],
)
