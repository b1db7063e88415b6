// A page as the middleware serves it, in jsdom, with static/banner/banner.js running on it.
//
// The consent markup (banner, settings control, placeholders) comes from the Python renderer via
// fixtures/markup.json (rewritten by `PYTHONPATH=. python -m tests.test_render`; a Python test
// fails when it is stale); the gated elements are written here the way the HTML rewriter emits them.
// `fetch` answers like POST PREFIX does; external scripts, iframes and the stylesheet are served by
// a jsdom request interceptor; form.submit() and location.reload() are recorded.
import { readFileSync } from "node:fs";
import jsdom from "jsdom";

const { JSDOM, VirtualConsole, requestInterceptor } = jsdom;

const here = (path) => new URL(path, import.meta.url);
export const SCRIPT = readFileSync(here("../../static/banner/banner.js"), "utf8");
const CSS = readFileSync(here("../../static/banner/banner.css"), "utf8");
export const MARKUP = JSON.parse(readFileSync(here("./fixtures/markup.json"), "utf8"));
export const ORIGIN = "https://shop.test";
export const CATEGORIES = ["necessary", "preferences", "analytics", "marketing"];

// What the server injects right after <head> (Consent Mode v2 defaults from the state).
export function consentDefault(granted = []) {
  const value = (category) => (granted.includes(category) ? "granted" : "denied");
  const defaults = {
    analytics_storage: value("analytics"),
    ad_storage: value("marketing"),
    ad_user_data: value("marketing"),
    ad_personalization: value("marketing"),
    functionality_storage: value("preferences"),
    personalization_storage: value("preferences"),
    security_storage: "granted",
  };
  return `<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments);}gtag('consent','default',${JSON.stringify(defaults)});</script>`;
}

// The state JSON of POST PREFIX for a decision, like the server computes it.
export function decide({ decision, categories = [] }) {
  const on = (name) =>
    name === "necessary" || decision === "accept_all" || (decision === "custom" && categories.includes(name));
  return {
    consent_id: "c0ffee",
    version: 1,
    decided: true,
    categories: Object.fromEntries(CATEGORIES.map((name) => [name, on(name)])),
    language: "en",
    expires_at: 1900000000,
    gpc: false,
    method: decision,
  };
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Build a page and run banner.js on it.
 * - head: markup after <head> (default: the Consent Mode snippet with everything denied)
 * - body: markup of the body (the consent markup first, as the middleware injects it)
 * - externals: {url: [script text, delay ms]} served to <script src>
 * - respond(body) -> {status, json} | throws: the server's answer to the JSON POST
 */
export async function openPage({ head = consentDefault(), body, externals = {}, respond } = {}) {
  const record = { posts: [], submits: [], reloads: 0, requests: [], errors: [] };
  const virtualConsole = new VirtualConsole();
  virtualConsole.on("jsdomError", (error) => {
    if (error.type === "not-implemented" && /navigation/.test(error.message)) record.reloads += 1;
    else record.errors.push(error);
  });
  const interceptor = requestInterceptor(async (request) => {
    record.requests.push(request.url);
    if (request.url.endsWith(".css")) return new Response(CSS, { headers: { "Content-Type": "text/css" } });
    if (request.url in externals) {
      const [text, ms = 0] = externals[request.url];
      await delay(ms);
      return new Response(text, { headers: { "Content-Type": "text/javascript" } });
    }
    if (request.url.startsWith("https://video.test/")) {
      return new Response("<p>video</p>", { headers: { "Content-Type": "text/html" } });
    }
    return new Response("", { status: 404 });
  });
  const html = `<!doctype html><html lang="en"><head>${head}<title>Shop</title></head><body>${body}</body></html>`;
  const dom = new JSDOM(html, {
    url: `${ORIGIN}/page`,
    runScripts: "dangerously",
    pretendToBeVisual: true,
    virtualConsole,
    resources: { interceptors: [interceptor] },
    beforeParse(window) {
      window.log = [];
      window.fetch = async (url, init) => {
        const body = JSON.parse(init.body);
        record.posts.push({ url: String(url), init, body });
        const answer = (respond ?? ((b) => ({ status: 200, json: decide(b) })))(body);
        await delay(1);
        return {
          status: answer.status,
          redirected: false,
          json: async () => (typeof answer.json === "function" ? answer.json() : answer.json),
        };
      };
      window.HTMLFormElement.prototype.submit = function () {
        record.submits.push([...new window.FormData(this)]);
      };
    },
  });
  const { window } = dom;
  const loaded = new Promise((resolve) => window.addEventListener("load", resolve));
  // banner.js is an ES module without imports or exports: strict code in a scope of its own.
  window.eval(`"use strict";(() => {\n${SCRIPT}\n})();`);
  await loaded;
  const { document } = window;
  return {
    dom,
    window,
    document,
    record,
    $: (selector) => document.querySelector(selector),
    $$: (selector) => [...document.querySelectorAll(selector)],
    /** The next `consent:change` event (fired once the choice is applied). */
    changed: () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no consent:change event")), 2000);
        document.addEventListener(
          "consent:change",
          (event) => {
            clearTimeout(timer);
            resolve(event);
          },
          { once: true },
        );
      }),
    /** Wait until `check()` is true (the fallback paths fire no event). */
    until: async (check, what = "condition") => {
      for (let i = 0; i < 200; i += 1) {
        if (check()) return;
        await delay(5);
      }
      throw new Error(`timed out waiting for ${what}`);
    },
    settle: () => delay(50),
    /** The gtag() commands in window.dataLayer (Arguments objects), as plain arrays of this realm. */
    consentCommands: () =>
      JSON.parse(
        JSON.stringify(
          window.dataLayer
            .filter((entry) => Object.prototype.toString.call(entry) === "[object Arguments]")
            .map((entry) => Array.from(entry)),
        ),
      ),
  };
}
