// KV browser: the keys under a prefix (the first page of them), a key's value and
// metadata, put and delete through the KV API. Live: the prefix's watch stream updates
// the rows as keys change (changed rows flash).

import { call, get, keyPath, watchPrefix } from "./api.js";
import { h, replace, section, table } from "./dom.js";

const PAGE = 500;

export async function render(root, _params, { live, base }) {
  const query = new URLSearchParams(location.search);
  const prefix = query.get("prefix") || "/";
  const selected = query.get("key");
  const input = h("input", { id: "prefix", name: "prefix", value: prefix, size: 40, "aria-label": "prefix" });
  const listBox = h("div", { id: "keys" });
  const detail = h("div", { id: "detail" });
  const message = h("p", { id: "message", class: "message", role: "status" });
  const newKey = h("input", { id: "new-key", placeholder: "key", size: 40, value: selected || prefix });
  const newValue = h("textarea", { id: "new-value", rows: 4, placeholder: "value", spellcheck: "false" });
  const say = (text, isError = false) => {
    message.textContent = text;
    message.className = `message ${isError ? "error" : "ok"}`;
  };
  replace(root,
    h("h1", {}, "KV"),
    h("form", { class: "inline", method: "get", action: `${base}/kv` }, "prefix ", input, h("button", { type: "submit" }, "Browse")),
    message,
    h("div", { class: "grid" },
      section("Keys", listBox),
      section("Key", detail,
        h("div", { class: "stack" }, newKey, newValue,
          h("div", { class: "inline" },
            h("button", { type: "button", id: "put", class: "primary", onclick: async () => {
              try {
                const answer = await call("PUT", `/api/v1/kv/${keyPath(newKey.value)}`, { value: newValue.value });
                say(`put ${newKey.value} at revision ${answer.revision}`);
              } catch (error) {
                say(`${error.code}: ${error.message}`, true);
              }
            } }, "Put"),
            h("button", { type: "button", id: "delete", class: "danger", onclick: async () => {
              if (!confirm(`Delete ${newKey.value}?`)) return;
              try {
                const answer = await call("DELETE", `/api/v1/kv/${keyPath(newKey.value)}`);
                say(`deleted ${answer.deleted} key(s) at revision ${answer.revision}`);
              } catch (error) {
                say(`${error.code}: ${error.message}`, true);
              }
            } }, "Delete"))))));

  const keys = new Map();
  const listed = await get(`/api/v1/kv?${new URLSearchParams({ prefix, limit: String(PAGE) })}`);
  for (const kv of listed.kvs) keys.set(kv.key, kv);
  const flashed = new Set();

  const show = (key) => {
    const kv = keys.get(key);
    newKey.value = key;
    if (!kv) {
      replace(detail, h("p", { class: "muted" }, `${key} does not exist (any more).`));
      return;
    }
    newValue.value = kv.value;
    replace(detail,
      h("p", { class: "mono", id: "detail-key" }, kv.key),
      h("pre", { class: "value", id: "detail-value" }, pretty(kv.value)),
      h("p", { class: "small muted" }, `version ${kv.version} · created at revision ${kv.create_revision} · modified at ${kv.mod_revision}${kv.lease ? ` · lease ${kv.lease}` : ""}`));
  };

  const draw = () => {
    const rows = [...keys.values()].sort((a, b) => (a.key < b.key ? -1 : 1)).map((kv) =>
      h("tr", { class: flashed.has(kv.key) ? "flash" : "", dataset: { key: kv.key } },
        h("td", { class: "mono" }, h("a", { href: `${base}/kv?${new URLSearchParams({ prefix, key: kv.key })}`,
          onclick: (e) => { e.preventDefault(); history.replaceState(null, "", e.currentTarget.href); show(kv.key); } }, kv.key)),
        h("td", { class: "mono small preview" }, kv.value.length > 80 ? `${kv.value.slice(0, 80)}…` : kv.value),
        h("td", {}, kv.version), h("td", {}, kv.mod_revision), h("td", {}, kv.lease || "")));
    replace(listBox,
      h("p", { class: "small muted" }, `${keys.size} key(s) under ${prefix}${listed.more ? ` (the first ${PAGE} listed; narrow the prefix)` : ""} · revision ${listed.revision}`),
      table(["key", "value", "version", "modified", "lease"], rows, { class: "kv" }));
    flashed.clear();
  };
  draw();
  if (selected) show(selected);

  watchPrefix(prefix, listed.revision + 1, {
    onState: (state, error) => live.set("kv", state, error),
    onReset: () => location.reload(),
    onEvent: (type, event) => {
      if (type === "put") keys.set(event.kv.key, event.kv);
      else if (type === "delete") keys.delete(event.kv.key);
      else return;
      flashed.add(event.kv.key);
      draw();
      if (newKey.value === event.kv.key) show(event.kv.key);
    },
  });
}

function pretty(value) {
  try {
    return JSON.stringify(JSON.parse(value), null, 2);
  } catch {
    return value;
  }
}
