// The ACL token of the person using the dashboard, and the form that asks for it.
//
// Like Consul's UI: the pages load without a token (they hold no data); the first API
// call answered 401 opens the form; the token entered is checked against
// /api/v1/acl/token/self, kept, and the page reloads so every call and every stream
// starts again with `Authorization: Bearer <token>`.
//
// Kept in sessionStorage, not localStorage: a management token is as strong as root, so
// it lives only as long as the tab (closing it signs out, and it is never written to the
// profile on disk nor shared with other tabs). The cost is asking again in a new tab.
// A script injected into the page could read either; the pages never insert markup
// (dom.js), which is the defence against that.

import { h } from "./dom.js";

const KEY = "shoal.acl.token";
let asking = null; // the open form, so many refused calls ask once

export function token() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: ask every load
  }
}

export function headers(extra = {}) {
  const secret = token();
  return secret ? { ...extra, authorization: `Bearer ${secret}` } : extra;
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  location.reload();
}

// Ask for a token (once, however many calls were refused).
export function ask() {
  if (asking) return;
  const stale = token() !== null;
  const input = h("input", { type: "password", name: "token", autocomplete: "off", required: true,
    placeholder: "secret of an ACL token", "aria-label": "ACL token", spellcheck: "false" });
  const problem = h("p", { class: "error", id: "token-error" },
    stale ? "The token of this tab is no longer accepted." : "");
  const form = h("form", { id: "token-form", class: "token-form" },
    h("h2", {}, "This cluster needs an ACL token"),
    h("p", { class: "muted" }, "Every request to this cluster is checked against the policies of a token. ",
      "Paste the secret of one (from shoal acl bootstrap or shoal acl token create)."),
    input,
    h("button", { type: "submit" }, "Sign in"),
    problem,
    h("p", { class: "muted small" }, "Kept in this tab only (sessionStorage); closing the tab signs out."));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const secret = input.value.trim();
    let response;
    try {
      response = await fetch("/api/v1/acl/token/self", { headers: { authorization: `Bearer ${secret}` } });
    } catch (error) {
      problem.textContent = `the member does not answer: ${error}`;
      return;
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      problem.textContent = body.message || `HTTP ${response.status}`;
      return;
    }
    sessionStorage.setItem(KEY, secret);
    location.reload();
  });
  asking = h("div", { class: "overlay", id: "token-overlay" }, form);
  document.body.append(asking);
  input.focus();
}

// The header's "signed in as" and sign-out button, when this tab has a token.
export async function showIdentity() {
  const box = document.getElementById("identity");
  if (!box || !token()) return;
  const response = await fetch("/api/v1/acl/token/self", { headers: headers() }).catch(() => null);
  if (!response || !response.ok) return;
  const self = await response.json();
  box.replaceChildren(
    h("span", { title: `accessor ${self.accessor}` }, `token ${String(self.accessor).slice(0, 8)} · ${self.policies.join(", ")}`),
    h("button", { type: "button", id: "sign-out", class: "link", onclick: signOut }, "Sign out"));
}
