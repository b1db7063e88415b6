"""The sample site in a real browser over real HTTP: fixtures.

- ``site``: ``tests.e2e.site_app:app`` (the sample site plus a page of trackers) under uvicorn, in
  a subprocess, on a free port of 127.0.0.1, from a scratch working directory (its consent log).
  The browser reaches it as ``http://www.brightlane.test`` (a host name, so that cookies set on
  the registrable domain, as Google Analytics sets ``_ga``, behave as on a real site).
- ``tracker``: the Google Analytics and YouTube stand-in (``tracker.py``), one port per host.
- ``browser``: starts Debian's Chromium (``/usr/bin/chromium``) through Playwright, headless, with
  a fresh user-data-dir, its network log on (``netlog.py``), and every host name mapped by
  ``--host-resolver-rules``. A persistent profile, not Playwright's usual incognito-like context:
  Chromium makes no preconnects or DNS prefetches in those, and their absence must mean something.

Without Chromium the tests skip, saying how to install it; with ``CI`` set they fail instead.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Playwright, Route, sync_playwright

from tests.e2e import netlog
from tests.e2e.tracker import (
    DNS_PREFETCH_CONTROL,
    PRECONNECT_CONTROL,
    TRACKER_HOSTS,
    StandIn,
    describe,
    stand_in,
)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CONSENT_E2E_CHROMIUM", "/usr/bin/chromium"))
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
SITE_HOST = "www.brightlane.test"
SECRET = "e2e-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
#: Quiet and hermetic (no sandbox: CI runs as root), plus what the TLS stand-in needs.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--ignore-certificate-errors",
)
#: Debian's /etc/chromium/master_preferences sets network prediction to "never" for new profiles; a
#: visitor's browser has it on (the default), and a preconnect must be able to happen for its
#: absence to mean anything.
PROFILE_PREFERENCES = {"net": {"network_prediction_options": 0}}
#: Timeouts of the waits (they wait for conditions; these only bound them).
TIMEOUT_MS = 15_000
CONTROL_PAGE = (
    f'<!doctype html><html lang="en"><title>control</title>'
    f'<link rel="preconnect" href="https://{PRECONNECT_CONTROL}">'
    f'<link rel="dns-prefetch" href="//{DNS_PREFETCH_CONTROL}"><p>control</p></html>'
)


def unavailable(reason: str) -> None:
    """Skip on a developer's machine; fail on CI, where a skipped browser test would hide a bug."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="package")
def chromium() -> Path:
    if not CHROMIUM.exists():
        unavailable(
            f"the browser tests need Chromium at {CHROMIUM}: install it with `apt-get install chromium` "
            "(or point CONSENT_E2E_CHROMIUM at a Chromium binary)"
        )
    if shutil.which("openssl") is None:
        unavailable("the browser tests need the openssl command: apt-get install openssl")
    return CHROMIUM


@dataclass(frozen=True)
class Site:
    host: str
    port: int
    directory: Path

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}{path}"


def wait_until_serving(process: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 30.0) -> None:
    """Until the site answers a request; a bounded loop that fails at once if the server died."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{log.read_text()}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/favicon.ico", headers={"Host": SITE_HOST})
            response = connection.getresponse()
            response.read()
            if response.status < 500:
                return
        except OSError:
            pass
        finally:
            connection.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the site did not answer within {timeout}s:\n{log.read_text()}")
        time.sleep(0.05)


@pytest.fixture(scope="package")
def site(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The site under uvicorn in a subprocess; the listening socket is bound here (no port race).
    At the end, the server's log must show no error: an exception the browser never saw is a bug."""
    directory = tmp_path_factory.mktemp("site")
    log = directory / "uvicorn.log"
    env = {
        **os.environ,
        "CONSENT_SECRET_KEY": SECRET,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with socket.socket() as listener, log.open("wb") as output:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = int(listener.getsockname()[1])
        command = [sys.executable, "-m", "uvicorn", "tests.e2e.site_app:app", "--fd", str(listener.fileno())]
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [*command, "--no-access-log", "--log-level", "warning"],
            cwd=directory,
            env=env,
            pass_fds=[listener.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_serving(process, port, log)
        yield Site(SITE_HOST, port, directory)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    errors = log.read_text(errors="replace")
    assert not any(word in errors for word in ("Traceback", "ERROR")), f"the site logged errors:\n{errors}"


@pytest.fixture(scope="package")
def tracker(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandIn]:
    with stand_in(tmp_path_factory.mktemp("stand-in")) as servers:
        yield servers


@pytest.fixture(scope="package")
def playwright(chromium: Path) -> Iterator[Playwright]:
    # Package scope, like the servers: the sync API keeps an event loop running on this thread,
    # which would stop the other tests' asyncio.run() if it lived on until the session ends.
    with sync_playwright() as driver:
        yield driver


@dataclass
class Browser:
    """One Chromium with a fresh profile; ``page`` is its first tab."""

    context: BrowserContext
    network_log: Path
    tracker: StandIn
    site: Site
    #: Where the stand-in's record stood when this browser started (before is another test's),
    #: or at the last ``mark``; and the URL that marks that moment in the browser's network log.
    since: tuple[int, int] = (0, 0)
    marker: str | None = None
    closed: bool = False
    #: Uncaught script errors in any of its pages (the banner script's, the stand-in's).
    script_errors: list[str] = field(default_factory=list)

    @property
    def page(self) -> Page:
        return self.context.pages[0]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.context.close()

    def mark(self, path: str) -> None:
        """From here on: open ``path`` (a URL no other step opens), the moment the checks start at."""
        self.since = self.tracker.traffic.mark()
        self.marker = self.site.url(path)
        self.page.goto(self.marker)

    def tracker_events(self, hosts: Iterable[str] = TRACKER_HOSTS) -> list[netlog.NetEvent]:
        """What the browser's own log says it did with these hosts since the mark (after ``close``)."""
        assert self.closed, "the network log is complete only once the browser has closed"
        ports = {host: self.tracker.port(host) for host in hosts}
        return netlog.events_naming(self.network_log, ports, after_url=self.marker)

    def state(self) -> dict[str, Any]:
        """``GET /_consent`` as the page's own script would see it."""
        state: dict[str, Any] = self.page.evaluate("fetch('/_consent').then((response) => response.json())")
        return state

    def assert_no_tracker_traffic(self, hosts: Iterable[str] = TRACKER_HOSTS) -> None:
        """Nothing reached these hosts since the start (or the mark): no request, no connection,
        no preconnect, no DNS prefetch. Closes the browser.

        First a control page hints at two control hosts, and the control's preconnect is awaited:
        proof that this browser does make speculative connections. Then the browser closes (its
        network log is complete), the stand-in's backlog is drained, and both records are read.
        """
        hosts = tuple(hosts)
        control = self.context.new_page()
        control.route(self.site.url("/__control"), fulfill_control_page)
        before = self.tracker.traffic.mark()
        control.goto(self.site.url("/__control"))
        self.tracker.traffic.wait_for_connection(PRECONNECT_CONTROL, after=before)
        self.close()
        self.tracker.barrier()
        connections, hits = self.tracker.traffic.since(self.since)
        connections = [c for c in connections if c.host in hosts]
        hits = [h for h in hits if h.host in hosts]
        assert not connections, f"tracker traffic:\n{describe(connections, hits)}"
        assert not hits, f"tracker traffic:\n{describe(connections, hits)}"
        events = self.tracker_events(hosts)
        assert not events, "the browser's network log names a tracker:\n" + "\n".join(map(str, events))
        controls = netlog.events_naming(
            self.network_log,
            {host: self.tracker.port(host) for host in (PRECONNECT_CONTROL, DNS_PREFETCH_CONTROL)},
        )
        hinted = {event.host for event in netlog.speculative_resolutions(controls)}
        assert hinted == {PRECONNECT_CONTROL, DNS_PREFETCH_CONTROL}, (
            "the control page's dns-prefetch and preconnect should show in the network log: "
            f"saw {sorted(hinted)}"
        )


def fulfill_control_page(route: Route) -> None:
    route.fulfill(status=200, content_type="text/html; charset=utf-8", body=CONTROL_PAGE)


Launch = Callable[..., Browser]


def start_browser(
    playwright: Playwright, chromium: Path, site: Site, tracker: StandIn, directory: Path, **options: Any
) -> Browser:
    """A Chromium with a fresh profile in ``directory`` (and its network log there)."""
    profile = directory / "profile"
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(json.dumps(PROFILE_PREFERENCES))
    log = directory / "netlog.json"
    rules = tracker.resolver_rules(site.host, site.port)
    context = playwright.chromium.launch_persistent_context(
        profile,
        executable_path=chromium,
        headless=True,
        args=[*CHROMIUM_ARGS, f"--host-resolver-rules={rules}", f"--log-net-log={log}"],
        **{"viewport": {"width": 1280, "height": 800}, "locale": "en-US", **options},
    )
    context.set_default_timeout(TIMEOUT_MS)
    instance = Browser(context, log, tracker, site, since=tracker.traffic.mark())
    context.on(
        "weberror",
        lambda error: instance.script_errors.append(f"{error.page and error.page.url}: {error.error}"),
    )
    return instance


@pytest.fixture
def browser(
    playwright: Playwright, chromium: Path, site: Site, tracker: StandIn, tmp_path: Path
) -> Iterator[Launch]:
    """``browser(**context_options)`` starts a Chromium with a fresh profile; all close at the end."""
    started: list[Browser] = []

    def launch(**options: Any) -> Browser:
        directory = tmp_path / f"browser-{len(started)}"
        started.append(start_browser(playwright, chromium, site, tracker, directory, **options))
        return started[-1]

    yield launch
    for instance in started:
        instance.close()
    errors = [error for instance in started for error in instance.script_errors]
    assert not errors, "uncaught script errors:\n" + "\n".join(errors)


__all__ = ["AXE", "SCREENSHOTS", "TRACKER_HOSTS", "Browser", "Launch", "Site", "start_browser", "unavailable"]
