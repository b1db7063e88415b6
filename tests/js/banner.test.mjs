// static/banner/banner.js in a browser-like DOM (jsdom): run with `npm test` (node --test tests/js/).
import assert from "node:assert/strict";
import { test } from "node:test";
import { MARKUP, ORIGIN, consentDefault, decide, openPage } from "./page.mjs";

// Gated elements as the HTML rewriter emits them while analytics and marketing are refused.
const GATED = `
<main>
<script data-consent="analytics" type="text/plain" id="a1" nonce="n0nce">log.push("inline analytics 1")</script>
<script data-consent="analytics" type="text/plain" src="https://cdn.test/slow.js" async data-x="kept"></script>
<script data-consent="analytics" type="text/plain" data-consent-type="text/javascript">log.push("inline analytics 2")</script>
<script data-consent="analytics" type="text/plain" src="https://cdn.test/fast.js"></script>
<script data-consent="analytics" type="text/plain" data-consent-type="text/x-template" src="https://cdn.test/template.html"></script>
<script data-consent="marketing" type="text/plain">log.push("inline marketing"); gtag("config", "AW-1")</script>
<script data-consent="analytics" type="text/plain">log.push("inline analytics 3")</script>
<img data-consent="analytics" data-consent-src="https://px.test/a.gif" data-consent-srcset="https://px.test/a2.gif 2x" alt="">
<link data-consent="marketing" rel="preconnect" data-consent-href="https://ads.test/">
__PLACEHOLDER__<iframe data-consent="marketing" data-consent-src="https://video.test/embed/1" title="Video"></iframe>
</main>`;

const EXTERNALS = {
  "https://cdn.test/slow.js": ['log.push("slow.js")', 40],
  "https://cdn.test/fast.js": ['log.push("fast.js")', 0],
};

const ANALYTICS_IN_ORDER = ["inline analytics 1", "slow.js", "inline analytics 2", "fast.js"];

function undecidedPage(options = {}) {
  return openPage({
    body: (options.banner ?? MARKUP.banner) + GATED.replace("__PLACEHOLDER__", MARKUP.placeholder_marketing),
    externals: EXTERNALS,
    ...options,
  });
}

function buttons(page, value) {
  return page.$$("button").find((button) => button.value === value);
}

function assertNoErrors(page) {
  assert.deepEqual(
    page.record.errors.map((error) => `${error.type}: ${error.message}`),
    [],
  );
}

test("focus goes to the banner heading when the page loads", async () => {
  const page = await undecidedPage();
  assert.equal(page.document.activeElement, page.$("#consent-banner-title"));
  assert.equal(page.$("#consent-settings"), null);
  assertNoErrors(page);
});

test("accept all: banner removed, settings control shown and focused", async () => {
  const page = await undecidedPage();
  const changed = page.changed();
  buttons(page, "accept_all").click();
  const event = await changed;
  assert.equal(page.$("#consent-banner"), null);
  const settings = page.$("#consent-settings");
  assert.ok(settings);
  assert.equal(settings.textContent, "Cookie settings");
  assert.equal(settings.href, `${ORIGIN}/_consent/preferences?next=/page`);
  assert.equal(settings.lang, "en");
  assert.equal(page.document.activeElement, settings);
  assert.equal(page.record.posts.length, 1);
  const [{ url, init, body }] = page.record.posts;
  assert.equal(url, `${ORIGIN}/_consent`);
  assert.equal(init.method, "POST");
  assert.equal(init.credentials, "same-origin");
  assert.equal(init.headers["Content-Type"], "application/json");
  assert.deepEqual(body, { decision: "accept_all", next: "/page" });
  assert.deepEqual(event.detail, decide(body));
  assert.deepEqual(page.record.submits, []);
  assert.equal(page.record.reloads, 0);
  assertNoErrors(page);
});

test("Consent Mode update carries the six values of the new state", async () => {
  const page = await undecidedPage();
  const changed = page.changed();
  buttons(page, "accept_all").click();
  await changed;
  const commands = page.consentCommands();
  assert.deepEqual(commands[0].slice(0, 2), ["consent", "default"]);
  assert.deepEqual(commands[1], [
    "consent",
    "update",
    {
      analytics_storage: "granted",
      ad_storage: "granted",
      ad_user_data: "granted",
      ad_personalization: "granted",
      functionality_storage: "granted",
      personalization_storage: "granted",
    },
  ]);
  // Before any revived tag: the marketing script's gtag("config") comes after the update.
  assert.deepEqual(commands[2], ["config", "AW-1"]);
});

test("Consent Mode update defines dataLayer and gtag when the page has none", async () => {
  const page = await undecidedPage({ head: "" });
  assert.equal(page.window.dataLayer, undefined);
  const changed = page.changed();
  buttons(page, "reject_all").click();
  await changed;
  assert.equal(typeof page.window.gtag, "function");
  assert.deepEqual(page.consentCommands(), [
    [
      "consent",
      "update",
      {
        analytics_storage: "denied",
        ad_storage: "denied",
        ad_user_data: "denied",
        ad_personalization: "denied",
        functionality_storage: "denied",
        personalization_storage: "denied",
      },
    ],
  ]);
});

test("granted scripts run in document order; external ones load one after another", async () => {
  const page = await undecidedPage();
  assert.deepEqual(page.window.log, []);
  const changed = page.changed();
  buttons(page, "accept_all").click();
  await changed;
  assert.deepEqual(page.window.log, [...ANALYTICS_IN_ORDER, "inline marketing", "inline analytics 3"]);
  assert.equal(page.$$("[data-consent]").length, 0);
  assert.equal(page.$$('script[type="text/plain"]').length, 0);
  assertNoErrors(page);
});

test("revived scripts keep their attributes, type and nonce", async () => {
  const page = await undecidedPage();
  // As in a browser once the nonce applied: the attribute reads "", the property keeps the value.
  const gated = page.$("#a1");
  gated.setAttribute("nonce", "");
  Object.defineProperty(gated, "nonce", { value: "n0nce" });
  const changed = page.changed();
  buttons(page, "accept_all").click();
  await changed;
  const first = page.$("#a1");
  assert.equal(first.nonce, "n0nce");
  assert.equal(first.hasAttribute("type"), false);
  assert.equal(first.hasAttribute("data-consent"), false);
  const slow = page.$('script[src="https://cdn.test/slow.js"]');
  assert.equal(slow.getAttribute("data-x"), "kept");
  assert.equal(slow.hasAttribute("async"), true);
  assert.equal(slow.hasAttribute("type"), false);
  const typed = page.$$("main script")[2];
  assert.equal(typed.getAttribute("type"), "text/javascript");
  assert.equal(typed.hasAttribute("data-consent-type"), false);
  // A type the browser does not run comes back as it was, and does not hold up the others.
  const template = page.$('script[src="https://cdn.test/template.html"]');
  assert.equal(template.type, "text/x-template");
  const img = page.$("img");
  assert.equal(img.getAttribute("src"), "https://px.test/a.gif");
  assert.equal(img.getAttribute("srcset"), "https://px.test/a2.gif 2x");
  assert.equal(img.hasAttribute("data-consent-src"), false);
  assert.equal(page.$('link[rel="preconnect"]').getAttribute("href"), "https://ads.test/");
});

test("refused categories stay inert", async () => {
  // The marketing placeholder grants marketing only: every analytics element stays as it was.
  const page = await undecidedPage();
  const changed = page.changed();
  buttons(page, "marketing").click();
  await changed;
  await page.settle();
  assert.deepEqual(page.window.log, ["inline marketing"]);
  const analytics = page.$$('[data-consent="analytics"]');
  assert.deepEqual(
    analytics.map((element) => element.localName),
    ["script", "script", "script", "script", "script", "script", "img"],
  );
  assert.ok(analytics.slice(0, 6).every((script) => script.type === "text/plain"));
  assert.equal(page.$("img").hasAttribute("src"), false);
  assert.equal(page.$("img").getAttribute("data-consent-src"), "https://px.test/a.gif");
  assert.equal(page.record.requests.filter((url) => url.startsWith("https://cdn.test/")).length, 0);
  assert.deepEqual(page.consentCommands()[1], [
    "consent",
    "update",
    {
      analytics_storage: "denied",
      ad_storage: "granted",
      ad_user_data: "granted",
      ad_personalization: "granted",
      functionality_storage: "denied",
      personalization_storage: "denied",
    },
  ]);
});

test("reject all: nothing is revived", async () => {
  const page = await undecidedPage();
  const changed = page.changed();
  buttons(page, "reject_all").click();
  await changed;
  assert.deepEqual(page.record.posts[0].body, { decision: "reject_all", next: "/page" });
  assert.equal(page.$("#consent-banner"), null);
  assert.ok(page.$("#consent-settings"));
  await page.settle();
  assert.deepEqual(page.window.log, []);
  assert.equal(page.$$("[data-consent]").length, 10);
  assert.equal(page.$("img").hasAttribute("src"), false);
  assert.ok(page.$("[data-consent-placeholder]"));
  assert.equal(page.record.requests.filter((url) => url.startsWith("https://cdn.test/")).length, 0);
  assert.equal(page.record.reloads, 0);
});

test("reload mode (CSP): the page reloads instead of reviving", async () => {
  const page = await undecidedPage({ banner: MARKUP.banner_reload });
  const changed = page.changed();
  buttons(page, "accept_all").click();
  await changed;
  assert.equal(page.record.reloads, 1);
  assert.equal(page.$("#consent-banner"), null);
  assert.deepEqual(page.consentCommands()[1][1], "update");
  await page.settle();
  assert.deepEqual(page.window.log, []);
  assert.equal(page.$$("[data-consent]").length, 10);
});

// A visitor who granted analytics earlier: analytics elements arrive ungated, marketing ones gated.
function decidedPage(options = {}) {
  return openPage({
    head: consentDefault(["analytics"]),
    body:
      MARKUP.settings +
      `<script>log.push("analytics ran at load")</script>
      <script data-consent="marketing" type="text/plain">log.push("inline marketing")</script>
      <p>Watch:</p>${MARKUP.placeholder_marketing_after_analytics}<iframe data-consent="marketing"
      data-consent-src="https://video.test/embed/1" title="Video"></iframe>`,
    ...options,
  });
}

test("placeholder: its button grants the category on top of the current choice and revives the iframe", async () => {
  const page = await decidedPage();
  const iframe = page.$("iframe");
  assert.equal(page.window.getComputedStyle(iframe).display, "none");
  const changed = page.changed();
  buttons(page, "marketing").click();
  await changed;
  assert.deepEqual(page.record.posts[0].body, {
    decision: "custom",
    categories: ["analytics", "marketing"],
    next: "/page",
  });
  assert.equal(page.$("[data-consent-placeholder]"), null);
  assert.equal(iframe.getAttribute("src"), "https://video.test/embed/1");
  assert.equal(iframe.hasAttribute("data-consent"), false);
  assert.notEqual(page.window.getComputedStyle(iframe).display, "none");
  assert.equal(page.document.activeElement, iframe);
  assert.deepEqual(page.window.log, ["analytics ran at load", "inline marketing"]);
  assert.equal(page.record.reloads, 0);
  assert.deepEqual(page.consentCommands().at(-1), [
    "consent",
    "update",
    {
      analytics_storage: "granted",
      ad_storage: "granted",
      ad_user_data: "granted",
      ad_personalization: "granted",
      functionality_storage: "denied",
      personalization_storage: "denied",
    },
  ]);
  await page.until(() => page.record.requests.includes("https://video.test/embed/1"), "the iframe to load");
  assertNoErrors(page);
});

test("placeholder on an undecided page is the decision: banner goes, settings control comes", async () => {
  const page = await undecidedPage();
  const changed = page.changed();
  buttons(page, "marketing").click();
  await changed;
  assert.deepEqual(page.record.posts[0].body, { decision: "custom", categories: ["marketing"], next: "/page" });
  assert.equal(page.$("#consent-banner"), null);
  assert.ok(page.$("#consent-settings"));
  assert.equal(page.$("[data-consent-placeholder]"), null);
  assert.equal(page.$("iframe").getAttribute("src"), "https://video.test/embed/1");
});

test("narrowing: a category granted at load now refused reloads the page", async () => {
  // Analytics was withdrawn in another tab: the answer refuses it although this page ran its scripts.
  const page = await decidedPage({
    respond: () => ({ status: 200, json: decide({ decision: "custom", categories: ["marketing"] }) }),
  });
  const changed = page.changed();
  buttons(page, "marketing").click();
  await changed;
  assert.equal(page.record.reloads, 1);
  assert.deepEqual(page.window.log, ["analytics ran at load"]);
  assert.ok(page.$('iframe[data-consent="marketing"]'));
});

test("a failed fetch falls back to submitting the form", async () => {
  const page = await undecidedPage({
    respond: () => {
      throw new TypeError("Failed to fetch");
    },
  });
  buttons(page, "accept_all").click();
  await page.until(() => page.record.submits.length === 1, "the form submit");
  assert.deepEqual(page.record.submits[0], [
    ["next", "/page"],
    ["decision", "accept_all"],
  ]);
  assert.ok(page.$("#consent-banner"));
  assert.deepEqual(page.window.log, []);
});

test("an error answer falls back to submitting the form, a placeholder's too", async () => {
  const answers = [
    { status: 403, json: {} },
    { status: 200, json: () => Promise.reject(new SyntaxError("not JSON")) },
  ];
  for (const answer of answers) {
    const page = await decidedPage({ respond: () => answer });
    buttons(page, "marketing").click();
    await page.until(() => page.record.submits.length === 1, "the form submit");
    const fields = page.record.submits[0];
    assert.deepEqual(fields.slice(0, 3), [
      ["decision", "custom"],
      ["next", "/page"],
      ["categories", "analytics"],
    ]);
    assert.ok(fields.some(([name, value]) => name === "categories" && value === "marketing"));
    assert.ok(page.$("[data-consent-placeholder]"));
    assert.deepEqual(page.window.log, ["analytics ran at load"]);
  }
});

test("Escape does not submit and does not close the banner", async () => {
  const page = await undecidedPage();
  const details = page.$("#consent-banner details");
  details.open = true;
  details.querySelector("a").focus();
  const event = new page.window.KeyboardEvent("keydown", { key: "Escape", bubbles: true, cancelable: true });
  page.document.activeElement.dispatchEvent(event);
  await page.settle();
  assert.equal(details.open, false); // Escape only folds the language list
  assert.ok(page.$("#consent-banner"));
  assert.deepEqual(page.record.posts, []);
  assert.deepEqual(page.record.submits, []);
  assert.deepEqual(page.window.log, []);
});

test("a second click while the first choice is on its way is ignored", async () => {
  const page = await undecidedPage();
  const changed = page.changed();
  buttons(page, "accept_all").click();
  buttons(page, "reject_all").click();
  await changed;
  await page.settle();
  assert.equal(page.record.posts.length, 1);
  assert.deepEqual(page.record.submits, []);
});

test("other forms on the page are left alone", async () => {
  const page = await openPage({
    body: MARKUP.settings + '<form action="/search"><button name="q" value="x">Search</button></form>',
  });
  let prevented = null;
  page.document.addEventListener("submit", (event) => {
    prevented = event.defaultPrevented;
    event.preventDefault();
  });
  page.$("button").click();
  await page.settle();
  assert.equal(prevented, false);
  assert.deepEqual(page.record.posts, []);
});
