// The dashboard's entry point: pick the page from the path (/ui/services/users ->
// services with "users"), render it, and show whether its streams are live.

import { h, replace } from "./dom.js";
import { showIdentity } from "./auth.js";
import * as overview from "./overview.js";
import * as services from "./services.js";
import * as config from "./config.js";
import * as kv from "./kv.js";
import * as jobs from "./jobs.js";

const BASE = "/ui";
const PAGES = { "": overview, services, config, kv, jobs };

const streams = new Map(); // name -> state, for the header's indicator

export const live = {
  set(name, state, error) {
    streams.set(name, state);
    if (state === "denied" && error && error.status === 403) {
      document.getElementById("page").append(
        h("p", { class: "error denied", dataset: { permission: error.permission || "" } },
          `${name}: ${error.message}`));
    }
    const el = document.getElementById("live");
    const states = [...streams.values()];
    const all = states.length && states.every((s) => s === "live");
    el.textContent = all ? "live" : states.includes("unauthorized") ? "token needed"
      : states.includes("denied") ? "denied"
      : states.includes("reconnecting") ? "reconnecting" : "connecting";
    el.className = `live ${all ? "on" : "off"}`;
    el.dataset.state = el.textContent;
  },
};

function route() {
  let path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "";
  path = path.replace(/^\/+|\/+$/g, "");
  const [first, ...rest] = path ? path.split("/").map(decodeURIComponent) : [""];
  return { name: first, params: rest };
}

function start() {
  const { name, params } = route();
  const root = document.getElementById("page");
  const page = PAGES[name];
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === (name || "overview"));
  }
  if (!page) {
    replace(root, h("h1", {}, "No such page"), h("p", {}, h("a", { href: `${BASE}/` }, "Overview")));
    return;
  }
  document.body.dataset.page = name || "overview";
  page.render(root, params, { live, base: BASE }).catch((error) => {
    if (error.status === 401) return; // the token form is open; the page reloads with a token
    root.append(h("p", { class: "error" }, `Could not load the page: ${error.message}`));
  });
}

start();
showIdentity();
