// Overview: the members (role, term, commit/applied index, health), every service with
// its healthy/total count, and recent events (leaders, instances up/down, publishes).
// Live: the members from /ui/api/cluster/stream, the rest from the API's watch streams.

import { get, listPrefix, Stream, watchPrefix } from "./api.js";
import { ago, badge, debounce, h, replace, section, table } from "./dom.js";
import { byService, CONFIG, configNews, healthy, InstanceLog, REGISTRY } from "./model.js";

const RECENT = 40; // events shown
const REPLAY = 500; // revisions replayed for the recent events

export async function render(root, _params, { live, base }) {
  const members = h("div", { id: "members" }, h("p", { class: "muted" }, "Asking every member…"));
  const servicesBox = h("div", { id: "services" });
  const eventsBox = h("ol", { id: "events", class: "events" });
  replace(
    root,
    h("h1", {}, "Overview"),
    h("div", { class: "grid" },
      section("Cluster members", members),
      section("Services", servicesBox)),
    section("Recent events", eventsBox),
  );

  const events = [];
  const addEvent = (event) => {
    if (events.some((e) => e.key === event.key)) return;
    events.push(event);
    events.sort((a, b) => (b.at || 0) - (a.at || 0) || (b.revision || 0) - (a.revision || 0));
    events.length = Math.min(events.length, RECENT);
    drawEvents();
  };
  const drawEvents = debounce(() => {
    replace(eventsBox, events.length ? events.map((e) =>
      h("li", { class: `event ${e.kind}`, dataset: { kind: e.kind } },
        h("span", { class: "when" }, e.at ? ago(e.at) : `rev ${e.revision}`),
        h("span", { class: `kind ${e.kind}` }, e.kind),
        e.status ? badge(e.status) : null,
        h("span", {}, e.text)),
    ) : h("li", { class: "muted" }, "Nothing yet."));
  }, 50);

  // -- members --
  new Stream(`${base}/api/cluster/stream`, {
    onState: (state, error) => live.set("cluster", state, error),
    onEvent: (type, data) => {
      if (type === "view") drawMembers(members, data);
      else if (type === "events") data.forEach((e) => addEvent({ ...e, key: `c${e.at}${e.text}` }));
      else if (type === "cluster") addEvent({ ...data, key: `c${data.at}${data.text}` });
      else if (type === "unreachable") replace(members, h("p", { class: "error" }, data.error));
    },
  });

  // -- services and instance events --
  const log = new InstanceLog();
  const listed = await listPrefix(REGISTRY);
  log.load(listed.kvs);
  const drawServices = debounce(() => {
    const grouped = byService(log.instances);
    const names = [...grouped.keys()].sort();
    if (!names.length) {
      replace(servicesBox, h("p", { class: "muted" }, "No service is registered."));
      return;
    }
    replace(servicesBox, table(["service", "healthy", ""], names.map((name) => {
      const all = grouped.get(name);
      const up = all.filter(healthy).length;
      const state = up === all.length ? "passing" : up === 0 ? "critical" : "warning";
      return h("tr", { dataset: { service: name } },
        h("td", {}, h("a", { href: `${base}/services/${encodeURIComponent(name)}` }, name)),
        h("td", { class: "count", dataset: { healthy: up, total: all.length } }, `${up} / ${all.length}`),
        h("td", {}, h("div", { class: `bar ${state}` }, h("span", { style: `width:${(100 * up) / all.length}%` }))));
    }), { class: "services" }));
  }, 50);
  drawServices();
  const start = Math.max(1, listed.revision - REPLAY);
  watchPrefix(REGISTRY, start, {
    replay: true,
    onState: (state, error) => live.set("registry", state, error),
    onEvent: (type, event) => {
      if (type !== "put" && type !== "delete") return;
      const news = log.apply(event, event.revision > listed.revision);
      if (news) addEvent({ ...news, key: `r${event.revision}${event.kv.key}` });
      drawServices();
    },
  });

  // -- config publishes --
  const configs = await get("/api/v1/config").catch(() => ({ revision: listed.revision }));
  watchPrefix(CONFIG, Math.max(1, configs.revision - REPLAY), {
    replay: true,
    onState: (state, error) => live.set("config", state, error),
    onEvent: (type, event) => {
      if (type !== "put" && type !== "delete") return;
      const news = configNews(event);
      if (news) addEvent({ ...news, key: `k${event.revision}${event.kv.key}` });
    },
  });
  drawEvents();
}

function drawMembers(box, view) {
  const rows = view.members.map((m) =>
    h("tr", { dataset: { member: m.name, role: m.role || "", health: m.health } },
      h("td", {}, m.name, m.name === view.asked ? h("span", { class: "muted" }, " (this one)") : null),
      h("td", { class: "role" }, m.role || "?", m.voter ? "" : " (learner)"),
      h("td", {}, m.term ?? ""),
      h("td", {}, m.commit_index ?? ""),
      h("td", {}, m.applied_index ?? ""),
      h("td", {}, m.revision ?? ""),
      h("td", { class: "health" }, badge(m.health === "healthy" ? "passing" : m.health === "unknown" ? "warning" : "critical",
        m.health.replace("_", " "))),
      h("td", { class: "muted small" }, m.client_url || m.error)),
  );
  replace(box,
    h("p", {}, "Leader: ", h("strong", { id: "leader" }, view.leader || "none"), `  ·  term ${view.term}`),
    table(["member", "role", "term", "commit", "applied", "revision", "health", "address"], rows, { class: "members" }));
}
