// consent-middleware banner: progressive enhancement of the server-rendered form (SPEC §3).
// Without this script the form posts and the server redirects back (303). With it, the choice is
// posted as JSON, the banner closes without a reload and a "consent:change" event carries the new
// state. On any failure the form is submitted the ordinary way. Escape never counts as consent.
const banner = document.getElementById("consent-banner");

function showSettings(label, href, lang) {
  if (!label || !href || document.getElementById("consent-settings")) return;
  const link = document.createElement("a");
  link.id = "consent-settings";
  link.href = href;
  link.lang = lang;
  link.textContent = label;
  document.body.append(link);
  link.focus();
}

if (banner) {
  const form = banner.querySelector("form");
  let busy = false;
  document.getElementById("consent-banner-title")?.focus({ preventScroll: true });
  // Escape only folds the language list: closing the banner is never taken as a choice.
  banner.addEventListener("keydown", (event) => {
    if (event.key === "Escape") banner.querySelector("details[open]")?.removeAttribute("open");
  });
  form?.addEventListener("submit", async (event) => {
    const button = event.submitter;
    if (!button || button.name !== "decision") return;
    event.preventDefault();
    if (busy) return;
    busy = true;
    const fallback = () => {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = "decision";
      input.value = button.value;
      form.append(input);
      form.submit();
    };
    let response;
    try {
      response = await fetch(form.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ decision: button.value, next: form.elements.next?.value || "/" }),
      });
    } catch {
      return fallback();
    }
    if (response.status !== 200 || response.redirected) return fallback();
    const state = await response.json().catch(() => null);
    banner.remove();
    const prefs = banner.querySelector(".consent-prefs");
    showSettings(banner.dataset.settings, prefs?.href, banner.lang);
    document.dispatchEvent(new CustomEvent("consent:change", { detail: state }));
  });
}
