// Config: namespaces and items; one item's editor (the API validates: an error names its
// line and column), history, side-by-side diff, rollback, and gray release with its
// selector. Every write is the config API's own (expect_version guards the editor).
// Live: the item's keys are watched; a publish elsewhere updates the page.

import { call, get, watchPrefix } from "./api.js";
import { ago, badge, debounce, h, replace, section, table, when } from "./dom.js";
import { sideBySide } from "./diff.js";
import { CONFIG } from "./model.js";

const FORMATS = ["json", "yaml", "toml", "properties", "text"];

export async function render(root, params, ctx) {
  if (params.length >= 2) return renderItem(root, params[0], params[1], ctx);
  return renderList(root, params[0], ctx);
}

const itemPath = (ns, name) => `/api/v1/config/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;

async function renderList(root, namespace, { live, base }) {
  const box = h("div", { id: "items" });
  const ns = h("input", { name: "namespace", placeholder: "namespace", required: true, value: namespace || "" });
  const name = h("input", { name: "name", placeholder: "name", required: true });
  const form = h("form", { class: "inline", onsubmit: (e) => {
    e.preventDefault();
    location.href = `${base}/config/${encodeURIComponent(ns.value)}/${encodeURIComponent(name.value)}`;
  } }, ns, " / ", name, h("button", { type: "submit" }, "New item"));
  replace(root, h("h1", {}, "Config"), section("Items", box), section("New item", form));
  const draw = async () => {
    const query = namespace ? `?namespace=${encodeURIComponent(namespace)}` : "";
    const listed = await get(`/api/v1/config${query}`);
    const groups = new Map();
    for (const item of listed.items) {
      if (!groups.has(item.namespace)) groups.set(item.namespace, []);
      groups.get(item.namespace).push(item);
    }
    replace(box, listed.items.length ? [...groups.keys()].sort().map((group) => h("div", { class: "namespace" },
      h("h3", {}, h("a", { href: `${base}/config/${encodeURIComponent(group)}` }, group)),
      table(["item", "version", "format", "updated", "gray release"], groups.get(group).map((item) =>
        h("tr", { dataset: { item: `${item.namespace}/${item.name}` } },
          h("td", {}, h("a", { href: `${base}/config/${encodeURIComponent(item.namespace)}/${encodeURIComponent(item.name)}` }, item.name)),
          h("td", {}, item.version), h("td", {}, item.format), h("td", {}, ago(item.updated)),
          h("td", {}, item.beta ? badge("warning") : ""))), { class: "items" })))
      : h("p", { class: "muted" }, "No config item yet."));
    return listed.revision;
  };
  const revision = await draw();
  const redraw = debounce(draw, 150);
  watchPrefix(CONFIG, revision + 1, {
    onState: (state, error) => live.set("config", state, error),
    onReset: () => location.reload(),
    onEvent: (type) => (type === "put" || type === "delete") && redraw(),
  });
}

async function renderItem(root, ns, name, { live, base }) {
  const path = itemPath(ns, name);
  const info = h("p", { id: "current" });
  const message = h("p", { id: "message", class: "message", role: "status" });
  const notice = h("p", { id: "notice", class: "notice", hidden: true });

  // -- the editor --
  const format = h("select", { id: "format", "aria-label": "format" }, FORMATS.map((f) => h("option", { value: f }, f)));
  const editor = h("textarea", { id: "editor", spellcheck: "false", rows: 16, "aria-label": "content" });
  const gutter = h("pre", { id: "gutter", class: "gutter", "aria-hidden": "true" });
  const author = h("input", { id: "author", placeholder: "author", value: localStorage.getItem("shoal.author") || "" });
  const note = h("input", { id: "note", placeholder: "what changed and why" });
  const problem = h("p", { id: "problem", class: "error", hidden: true });
  const publish = h("button", { type: "button", id: "publish", class: "primary" }, "Publish");
  const drawGutter = (bad = null) => {
    const lines = editor.value.split("\n").length;
    replace(gutter, Array.from({ length: lines }, (_, i) =>
      h("span", { class: i + 1 === bad ? "bad" : "", dataset: { line: i + 1 } }, `${i + 1}\n`)));
  };
  editor.addEventListener("input", () => {
    edited = true;
    drawGutter();
  });
  editor.addEventListener("scroll", () => (gutter.scrollTop = editor.scrollTop));

  // -- history, diff, beta --
  const historyBox = h("div", { id: "history" });
  const from = h("select", { id: "diff-from", "aria-label": "from version" });
  const to = h("select", { id: "diff-to", "aria-label": "to version" });
  const diffBox = h("div", { id: "diff" });
  const betaBox = h("div", { id: "beta" });
  const selector = h("input", { id: "beta-selector", placeholder: "zone=eu,canary=true" });
  const betaContent = h("textarea", { id: "beta-content", rows: 6, spellcheck: "false", "aria-label": "beta content" });
  const betaButton = h("button", { type: "button", id: "beta-publish" }, "Start gray release");

  replace(root,
    h("p", { class: "crumbs" }, h("a", { href: `${base}/config` }, "Config"), " / ",
      h("a", { href: `${base}/config/${encodeURIComponent(ns)}` }, ns), " / ", name),
    h("h1", {}, `${ns}/${name}`), info, message, notice,
    section("Editor",
      h("div", { class: "editor" }, gutter, editor),
      problem,
      h("div", { class: "inline" }, h("label", {}, "format ", format), author, note, publish)),
    h("div", { class: "grid" },
      section("History", historyBox),
      section("Gray release", betaBox,
        h("div", { class: "stack" }, h("label", {}, "selector (labels an instance must have) ", selector),
          betaContent, betaButton))),
    section("Diff", h("div", { class: "inline" }, "from ", from, " to ", to), diffBox),
  );

  const say = (text, isError = false) => {
    message.textContent = text;
    message.className = `message ${isError ? "error" : "ok"}`;
  };
  let current = 0; // the version the editor was loaded from (expect_version)
  let edited = false;

  const showProblem = (error) => {
    const body = error.body || {};
    if (body.error === "invalid_content") {
      const where = body.line ? `line ${body.line}, column ${body.column}: ` : "";
      problem.textContent = `${where}${body.message}`;
      problem.dataset.line = body.line || "";
      problem.dataset.column = body.column || "";
      drawGutter(body.line || null);
      if (body.line) focusLine(editor, body.line, body.column || 1);
    } else {
      problem.textContent = `${error.code}: ${error.message}`;
      delete problem.dataset.line;
    }
    problem.hidden = false;
  };

  const load = async ({ content = true } = {}) => {
    let history;
    try {
      history = await get(`${path}/history`);
    } catch (error) {
      if (error.status !== 404) throw error;
      info.textContent = "A new item: nothing is published yet.";
      current = 0;
      drawGutter();
      replace(historyBox, h("p", { class: "muted" }, "No version yet."));
      replace(betaBox, h("p", { class: "muted" }, "No gray release."));
      return null;
    }
    const latest = history.versions[0];
    current = history.current;
    info.replaceChildren(`version ${history.current} · ${latest.format} · by ${latest.author || "?"} · ${ago(latest.time)}`);
    info.dataset.version = history.current;
    if (content) {
      const item = await get(`${path}/versions/${history.current}`);
      editor.value = item.content;
      format.value = item.format;
      if (!betaContent.value) betaContent.value = item.content;
      edited = false;
      notice.hidden = true;
      drawGutter();
    }
    drawHistory(history);
    drawBeta(history.beta);
    fillDiff(history.versions);
    return history;
  };

  const drawHistory = (history) => {
    replace(historyBox, table(["version", "kind", "author", "when", "message", "sha256", ""],
      history.versions.map((v) => h("tr", { dataset: { version: v.number } },
        h("td", {}, v.number, v.number === history.current ? h("span", { class: "muted" }, " (current)") : ""),
        h("td", {}, v.kind === "rollback" ? `rollback to ${v.source}` : v.kind),
        h("td", {}, v.author), h("td", { class: "small" }, when(v.time)),
        h("td", {}, v.message), h("td", { class: "mono small" }, v.sha256.slice(0, 10)),
        h("td", {},
          h("button", { type: "button", class: "diff-with", onclick: () => showDiff(v.number, history.current) }, "Diff"),
          v.number !== history.current
            ? h("button", { type: "button", class: "rollback", onclick: () => rollback(v.number) }, "Roll back to this")
            : ""))),
      { class: "history" }));
  };

  const drawBeta = (beta) => {
    if (!beta) {
      replace(betaBox, h("p", { class: "muted", id: "no-beta" }, "No gray release is running."));
      return;
    }
    const sel = Object.entries(beta.selector).map(([k, v]) => `${k}=${v}`).join(", ");
    replace(betaBox,
      h("p", { id: "beta-running" }, badge("warning"), ` running for instances with ${sel} (based on version ${beta.base}, by ${beta.author || "?"}, ${ago(beta.time)})`),
      h("div", { class: "inline" },
        h("button", { type: "button", id: "beta-promote", onclick: () => act("POST", `${path}/beta/promote`, { author: author.value || undefined }, "gray release promoted") }, "Promote to everyone"),
        h("button", { type: "button", id: "beta-drop", class: "danger", onclick: () => act("DELETE", `${path}/beta`, undefined, "gray release ended") }, "End it")));
  };

  const fillDiff = (versions) => {
    const options = (select) => {
      const keep = select.value;
      replace(select, versions.map((v) => h("option", { value: v.number }, `v${v.number}`)));
      if (keep && versions.some((v) => String(v.number) === keep)) select.value = keep;
    };
    options(from);
    options(to);
    if (!from.dataset.chosen && versions.length > 1) from.value = String(versions[1].number);
    if (!to.dataset.chosen) to.value = String(versions[0].number);
    showDiff(Number(from.value), Number(to.value), false);
  };

  const showDiff = async (a, b, scroll = true) => {
    if (!a || !b) return;
    from.value = String(a);
    to.value = String(b);
    const answer = await get(`${path}/diff?from=${a}&to=${b}`);
    const rows = sideBySide(answer.diff);
    replace(diffBox, rows.length ? h("table", { class: "diff" },
      h("thead", {}, h("tr", {}, h("th", { colspan: 2 }, `version ${a}`), h("th", { colspan: 2 }, `version ${b}`))),
      h("tbody", {}, rows.map((row) => row.kind === "hunk"
        ? h("tr", { class: "hunk" }, h("td", { colspan: 4 }, row.left))
        : h("tr", { class: row.kind },
          h("td", { class: "no" }, row.leftNo ?? ""), h("td", { class: `left ${row.left === null ? "empty" : ""}` }, row.left ?? ""),
          h("td", { class: "no" }, row.rightNo ?? ""), h("td", { class: `right ${row.right === null ? "empty" : ""}` }, row.right ?? "")))))
      : h("p", { class: "muted", id: "no-diff" }, `versions ${a} and ${b} have the same content`));
    if (scroll) diffBox.scrollIntoView({ block: "nearest" });
  };
  from.addEventListener("change", () => { from.dataset.chosen = "1"; showDiff(Number(from.value), Number(to.value)); });
  to.addEventListener("change", () => { to.dataset.chosen = "1"; showDiff(Number(from.value), Number(to.value)); });

  const act = async (method, url, body, done) => {
    try {
      const answer = await call(method, url, body);
      say(typeof done === "function" ? done(answer) : done);
      await load({ content: !edited });
      return answer;
    } catch (error) {
      say(`${error.code}: ${error.message}`, true);
      return null;
    }
  };

  const rollback = (version) => act("POST", `${path}/rollback`,
    { version, author: author.value || undefined, message: `rolled back to version ${version} from the dashboard` },
    (answer) => `rolled back: version ${answer.version} has version ${version}'s content`);

  publish.addEventListener("click", async () => {
    localStorage.setItem("shoal.author", author.value);
    problem.hidden = true;
    drawGutter();
    const body = { content: editor.value, format: format.value, expect_version: current };
    if (author.value) body.author = author.value;
    if (note.value) body.message = note.value;
    try {
      const answer = await call("PUT", path, body);
      say(`published version ${answer.version}`);
      note.value = "";
      await load();
    } catch (error) {
      showProblem(error);
      say("not published: nothing was written", true);
    }
  });

  betaButton.addEventListener("click", async () => {
    const parsed = parseSelector(selector.value);
    if (parsed.error) {
      say(parsed.error, true);
      return;
    }
    try {
      await call("PUT", `${path}/beta`, { content: betaContent.value, format: format.value, selector: parsed.selector,
        author: author.value || undefined });
      say("gray release started");
      await load({ content: !edited });
    } catch (error) {
      showProblem(error);
      say(`gray release not started: ${error.message}`, true);
    }
  });

  const history = await load();
  const start = history ? history.revision + 1 : (await get("/api/v1/config")).revision + 1;
  const changed = debounce(async () => {
    const before = current;
    await load({ content: !edited });
    if (edited && current !== before) {
      notice.hidden = false;
      notice.textContent = `Version ${current} was published meanwhile; your edit is based on version ${before} (publishing it will be refused until you reload).`;
    }
  }, 150);
  watchPrefix(`${CONFIG}${ns}/${name}/`, start, {
    onState: (state, error) => live.set("config", state, error),
    onReset: () => location.reload(),
    onEvent: (type) => (type === "put" || type === "delete") && changed(),
  });
}

// "zone=eu, canary=true" -> {selector: {zone: "eu", canary: "true"}} (the API checks names).
function parseSelector(text) {
  const selector = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq <= 0) return { error: `selector: ${JSON.stringify(part)} is not label=value` };
    selector[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  if (!Object.keys(selector).length) return { error: "selector: give at least one label=value" };
  return { selector };
}

function focusLine(textarea, line, column) {
  const lines = textarea.value.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  offset += Math.max(0, column - 1);
  textarea.focus();
  textarea.setSelectionRange(offset, offset);
}
