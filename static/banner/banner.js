// consent-middleware banner: progressive enhancement of the server-rendered forms (SPEC §3).
// Without this script the banner and placeholder forms post and the server redirects back (303).
// With it, the choice is posted as JSON; then the banner closes, Google Consent Mode is updated and
// the gated elements of the granted categories come alive in place, in document order, with no
// reload. It reloads instead in CSP mode (data-consent-reload: a page's CSP cannot change) and when
// a category granted before is now refused (its scripts already ran). A "consent:change" event
// carries the new state. On any failure the form is submitted the ordinary way. Escape never counts
// as consent.
const banner = document.getElementById("consent-banner");
const reload = document.querySelector("[data-consent-reload]");
const all = (selector) => document.querySelectorAll(selector);
// The optional categories granted when the page was rendered: a placeholder's form carries them.
const kept = all("[data-consent-placeholder] [name=categories][type=hidden]");
let granted = new Set([...kept].map((input) => input.value));
let busy = false;

function showSettings() {
  const href = banner.querySelector(".consent-prefs")?.href;
  if (!banner.dataset.settings || !href || document.getElementById("consent-settings")) return;
  const link = document.createElement("a");
  link.id = "consent-settings";
  link.href = href;
  link.lang = banner.lang;
  link.textContent = banner.dataset.settings;
  document.body.append(link);
  link.focus();
}

// Bring the inert elements of the granted categories back, in document order. A script only runs
// as a new element; external ones load one after another, so order-dependent tags keep working.
async function revive() {
  for (const box of all("[data-consent-placeholder]")) {
    if (granted.has(box.dataset.consentPlaceholder)) box.remove();
  }
  for (const old of all("[data-consent]")) {
    if (!granted.has(old.dataset.consent)) continue;
    if (old.localName !== "script") {
      for (const name of ["src", "srcset", "href"]) {
        const value = old.getAttribute("data-consent-" + name);
        if (value === null) continue;
        old.removeAttribute("data-consent-" + name);
        old.setAttribute(name, value);
      }
      old.removeAttribute("data-consent");
      if (old.localName === "source") old.parentNode.load?.();
      continue;
    }
    const script = document.createElement("script");
    for (const { name, value } of old.attributes) {
      if (!/^(type|data-consent(-type)?)$/.test(name)) script.setAttribute(name, value);
    }
    const type = old.getAttribute("data-consent-type");
    if (type !== null) script.type = type;
    if (old.nonce) script.nonce = old.nonce; // the attribute reads "" once the browser applied it
    script.text = old.text;
    // Only a script the browser will fetch fires load or error (not text/x-template, nomodule).
    const loads = script.src && !script.noModule && (!type || /script|module/i.test(type));
    const done = loads && new Promise((resolve) => {
      script.addEventListener("load", resolve);
      script.addEventListener("error", resolve);
    });
    old.replaceWith(script);
    await done;
  }
}

if (banner) {
  document.getElementById("consent-banner-title")?.focus({ preventScroll: true });
  // Escape only folds the language list: closing the banner is never taken as a choice.
  banner.addEventListener("keydown", (event) => {
    if (event.key === "Escape") banner.querySelector("details[open]")?.removeAttribute("open");
  });
}

document.addEventListener("submit", async (event) => {
  const form = event.target;
  const button = event.submitter;
  const box = form.closest("[data-consent-placeholder]");
  if (!button?.name || !(box || form.closest("#consent-banner"))) return;
  event.preventDefault();
  if (busy) return;
  busy = true;
  // A placeholder grants its category on top of the current choice.
  const categories = box ? [...granted, button.value] : undefined;
  let state;
  try {
    const response = await fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({
        decision: box ? "custom" : button.value,
        categories,
        next: form.elements.next?.value || "/",
      }),
    });
    if (response.status === 200 && !response.redirected) state = await response.json();
  } catch {}
  const on = state?.categories;
  if (!on) {
    // form.submit() leaves out the clicked button: add its value (and the current choice).
    for (const value of categories || [button.value]) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = button.name;
      input.value = value;
      form.append(input);
    }
    return form.submit();
  }
  if (banner?.isConnected) {
    banner.remove();
    showSettings();
  }
  const consent = (name) => (on[name] ? "granted" : "denied");
  window.dataLayer ||= [];
  window.gtag ||= function () {
    dataLayer.push(arguments);
  };
  gtag("consent", "update", {
    analytics_storage: consent("analytics"),
    ad_storage: consent("marketing"),
    ad_user_data: consent("marketing"),
    ad_personalization: consent("marketing"),
    functionality_storage: consent("preferences"),
    personalization_storage: consent("preferences"),
  });
  const narrowed = [...granted].some((name) => !on[name]);
  granted = new Set(Object.keys(on).filter((name) => on[name]));
  const next = box?.nextElementSibling;
  if (!reload && !narrowed) {
    await revive();
    if (box && !box.isConnected) next?.focus();
  }
  document.dispatchEvent(new CustomEvent("consent:change", { detail: state }));
  if (reload || narrowed) location.reload();
  else busy = false;
});
