"""The sample site as the e2e tests serve it: ``examples.site`` unchanged, plus one page.

``app`` has every route of ``examples.site.app`` and the very same middleware (its
``user_middleware``: same options, same services), and adds ``/trackers``: a page carrying every
kind of Google tag a real site has (preconnect and dns-prefetch hints, a preload, the Tag Manager
snippet and its ``<noscript>`` iframe, a measurement pixel with ``srcset``, a beacon), so that the
tests can see that none of them reaches the network before consent. Run from a scratch working
directory: the sample site's consent log (``sqlite:///consent-log.sqlite3``) is relative to it.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from examples import site

TRACKERS = """<h1>Every kind of tag</h1>
<link rel="preconnect" href="https://www.google-analytics.com">
<link rel="preconnect" href="https://region1.google-analytics.com" crossorigin>
<link rel="dns-prefetch" href="//analytics.google.com">
<link rel="preload" as="script" href="https://www.googletagmanager.com/gtag/js?id=G-DEMO123456">
<script>(function(w,d,s,l,i){w[l]=w[l]||[];w[l].push({'gtm.start':new Date().getTime(),event:'gtm.js'});
var f=d.getElementsByTagName(s)[0],j=d.createElement(s),dl=l!='dataLayer'?'&l='+l:'';j.async=true;
j.src='https://www.googletagmanager.com/gtm.js?id='+i+dl;f.parentNode.insertBefore(j,f);
})(window,document,'script','dataLayer','GTM-DEMO12');</script>
<noscript><iframe src="https://www.googletagmanager.com/ns.html?id=GTM-DEMO12" height="0" width="0"
 title="Tag Manager"></iframe></noscript>
<img src="https://www.google-analytics.com/collect?v=1&amp;t=pageview&amp;tid=UA-000000-1" alt=""
 srcset="https://www.google-analytics.com/collect?v=1&amp;t=pageview&amp;tid=UA-000000-2 2x"
 width="1" height="1">
<picture><source srcset="https://analytics.google.com/pixel.webp" type="image/webp">
<img src="https://analytics.google.com/pixel.gif" alt="" width="1" height="1"></picture>
<script>navigator.sendBeacon("https://region1.google-analytics.com/g/collect?v=2&tid=G-DEMO123456&en=beacon");</script>
<p>Nothing above may reach Google before you allow analytics.</p>"""


async def trackers(request: Request) -> Response:
    return site.page("Trackers", TRACKERS)


app = Starlette(
    routes=[*site.app.routes, Route("/trackers", trackers)],
    middleware=site.app.user_middleware,
)
