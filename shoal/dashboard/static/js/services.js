// Services: every service with its healthy/total count; one service's instances with
// status, weight, zone, version, metadata, check results and their history; deregister
// and change a weight (through the API's own registration endpoint and its validation).
// Live: the registry's watch stream; history is the instance keys' replayed events.

import { call, get, keyPath, listPrefix, watchPrefix } from "./api.js";
import { ago, badge, debounce, h, replace, section, table, when } from "./dom.js";
import { byService, healthy, InstanceLog, REGISTRY } from "./model.js";

export async function render(root, params, ctx) {
  if (params.length) return renderService(root, params[0], ctx);
  return renderList(root, ctx);
}

async function renderList(root, { live, base }) {
  const box = h("div", { id: "service-list" });
  replace(root, h("h1", {}, "Services"), section("All services", box));
  const log = new InstanceLog();
  const listed = await listPrefix(REGISTRY);
  log.load(listed.kvs);
  const draw = debounce(() => {
    const grouped = byService(log.instances);
    const names = [...grouped.keys()].sort();
    replace(box, names.length ? table(["service", "healthy", "zones", "versions"], names.map((name) => {
      const all = grouped.get(name);
      const zones = [...new Set(all.map((i) => i.zone).filter(Boolean))].join(", ");
      const versions = [...new Set(all.map((i) => i.version).filter(Boolean))].join(", ");
      return h("tr", { dataset: { service: name } },
        h("td", {}, h("a", { href: `${base}/services/${encodeURIComponent(name)}` }, name)),
        h("td", { class: "count" }, `${all.filter(healthy).length} / ${all.length}`),
        h("td", {}, zones), h("td", {}, versions));
    }), { class: "services" }) : h("p", { class: "muted" }, "No service is registered."));
  }, 50);
  draw();
  watchPrefix(REGISTRY, listed.revision + 1, {
    onState: (state, error) => live.set("registry", state, error),
    onReset: () => location.reload(),
    onEvent: (type, event) => {
      if (type === "put" || type === "delete") {
        log.apply(event, true);
        draw();
      }
    },
  });
}

async function renderService(root, service, { live, base }) {
  const prefix = `${REGISTRY}${service}/instances/`;
  const summary = h("p", { id: "summary" });
  const instancesBox = h("div", { id: "instances" });
  const historyBox = h("div", { id: "history" });
  const message = h("p", { id: "message", class: "message", role: "status" });
  replace(root,
    h("p", { class: "crumbs" }, h("a", { href: `${base}/services` }, "Services"), " / ", service),
    h("h1", {}, service), summary, message,
    section("Instances", instancesBox),
    section("Health history", h("p", { class: "muted small" },
      "Status changes of this service's instances, replayed from the store's history and then live."), historyBox));

  const say = (text, isError = false) => {
    message.textContent = text;
    message.className = `message ${isError ? "error" : "ok"}`;
  };
  const log = new InstanceLog();
  const history = [];
  let checks = new Map();
  // One weight input per instance, kept across re-renders: what a person is typing
  // survives a live update of the table.
  const inputs = new Map();
  const weightInput = (instance) => {
    let input = inputs.get(instance.id);
    if (!input) {
      input = h("input", { type: "number", step: "any", class: "weight", "aria-label": `weight of ${instance.id}` });
      input.addEventListener("input", () => (input.dataset.edited = "1"));
      inputs.set(instance.id, input);
    }
    if (!input.dataset.edited) input.value = instance.weight;
    return input;
  };
  const listed = await listPrefix(prefix);
  log.load(listed.kvs);

  const loadChecks = debounce(async () => {
    try {
      const found = await get(`${base}/api/checks?service=${encodeURIComponent(service)}`);
      checks = new Map(found.checks.map((c) => [c.id, c]));
    } catch (error) {
      checks = new Map();
    }
    draw();
  }, 200);

  const draw = debounce(() => {
    const all = [...log.instances.values()].sort((a, b) => a.id.localeCompare(b.id));
    const up = all.filter(healthy).length;
    summary.textContent = `${up} of ${all.length} instances healthy`;
    summary.dataset.healthy = up;
    summary.dataset.total = all.length;
    if (!all.length) {
      replace(instancesBox, h("p", { class: "muted" }, "No instance is registered."));
      return;
    }
    replace(instancesBox, table(
      ["instance", "address", "status", "weight", "zone", "version", "tags / metadata", "check", "last probe", ""],
      all.map((instance) => instanceRow(instance, checks.get(instance.id), { service, say, weightInput })),
      { class: "instances" }));
  }, 50);

  const drawHistory = debounce(() => {
    const rows = [...history].reverse().slice(0, 200).map((e) =>
      h("tr", { dataset: { instance: e.instance, status: e.status } },
        h("td", { class: "small" }, e.at ? when(e.at) : `rev ${e.revision}`),
        h("td", {}, e.instance), h("td", {}, badge(e.status)), h("td", {}, e.text)));
    replace(historyBox, rows.length ? table(["when", "instance", "status", ""], rows, { class: "history" })
      : h("p", { class: "muted" }, "No change is kept in the store's history."));
  }, 50);

  draw();
  loadChecks();
  // One stream from the oldest kept revision: events up to the listing are history
  // only; later ones change the table too.
  watchPrefix(prefix, 1, {
    replay: true,
    onState: (state, error) => live.set("registry", state, error),
    onEvent: (type, event) => {
      if (type !== "put" && type !== "delete") return;
      const current = event.revision > listed.revision;
      const news = log.apply(event, current);
      if (news) {
        history.push(news);
        drawHistory();
      }
      if (current) {
        draw();
        loadChecks();
      }
    },
  });
  drawHistory();
  root.append(h("p", {}, h("button", { type: "button", onclick: () => loadChecks() }, "Refresh check results")));
}

function instanceRow(instance, check, { service, say, weightInput }) {
  const status = instance.health ? instance.health.status : "passing";
  const weight = weightInput(instance);
  const save = async () => {
    try {
      await changeWeight(service, instance, weight.value);
      delete weight.dataset.edited;
      say(`${instance.id}: weight set to ${weight.value}`);
    } catch (error) {
      say(`${instance.id}: ${error.message}`, true);
    }
  };
  const deregister = async () => {
    if (!confirm(`Deregister ${service}/${instance.id}?`)) return;
    try {
      await call("DELETE", `/api/v1/services/${encodeURIComponent(service)}/instances/${encodeURIComponent(instance.id)}`);
      say(`${instance.id} deregistered`);
    } catch (error) {
      say(`${instance.id}: ${error.message}`, true);
    }
  };
  const c = instance.check;
  const probe = check && check.last;
  return h("tr", { dataset: { instance: instance.id, status } },
    h("td", {}, instance.id),
    h("td", {}, `${instance.address}:${instance.port}`),
    h("td", { class: "status" }, badge(status),
      h("div", { class: "small muted" }, instance.health ? `${instance.health.reason} · since ${ago(instance.health.since)}` : "")),
    // A form, so Enter in the (kept) input saves too: the keyboard does not depend on
    // where a live re-render has just moved the button.
    h("td", {}, h("form", { class: "weight-form", onsubmit: (event) => { event.preventDefault(); save(); } },
      weight, h("button", { type: "submit", class: "save-weight" }, "Set"))),
    h("td", {}, instance.zone || ""),
    h("td", {}, instance.version || ""),
    h("td", { class: "small" }, (instance.tags || []).map((t) => h("span", { class: "tag" }, t)),
      Object.entries(instance.metadata || {}).map(([k, v]) => h("div", { class: "meta" }, `${k}=${v}`))),
    h("td", { class: "small" }, c ? `${c.type}${c.path ? " " + c.path : ""}${c.interval ? " every " + c.interval : ""}${c.ttl ? " ttl " + c.ttl : ""}` : "none"),
    h("td", { class: "small probe", dataset: { ok: probe ? String(probe.ok) : "" } }, probe
      ? [badge(probe.ok ? "passing" : "critical"), ` ${probe.reason || ""} · ${ago(probe.at)} · by ${check.member}`,
        h("div", { class: "muted" }, `${check.successes} ok / ${check.failures} failed in a row`)]
      : check ? `run by ${check.member}, no probe yet` : ""),
    h("td", {}, h("button", { type: "button", class: "danger deregister", onclick: deregister }, "Deregister")));
}

// A re-registration with every field as stored and the new weight, on the same lease:
// the API validates the weight (and answers its own error) like any registration.
async function changeWeight(service, instance, raw) {
  const key = `${REGISTRY}${service}/instances/${instance.id}`;
  const stored = await get(`/api/v1/kv/${keyPath(key)}`);
  const weight = raw === "" ? NaN : Number(raw);
  const body = {
    address: instance.address,
    port: instance.port,
    weight: Number.isFinite(weight) ? weight : raw,
    zone: instance.zone || "",
    tags: instance.tags || [],
    metadata: instance.metadata || {},
    version: instance.version || "",
  };
  if (instance.check) body.check = instance.check;
  if (instance.deregister_after !== null && instance.deregister_after !== undefined) {
    body.deregister_after = instance.deregister_after;
  }
  if (stored.lease) body.lease = stored.lease;
  return call("PUT", `/api/v1/services/${encodeURIComponent(service)}/instances/${encodeURIComponent(instance.id)}`, body);
}
