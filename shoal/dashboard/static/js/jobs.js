// Jobs: every recorded job with a live progress bar; one job's task stream -- which
// worker ran which task, retries, stragglers and their speculative copies -- from the
// summary the driver keeps in the store (shoal/compute/records.py). Live: the job keys'
// watch streams (the driver rewrites a summary at most every 200 ms).

import { listPrefix, parseJson, watchPrefix } from "./api.js";
import { ago, badge, debounce, h, replace, section, table, when } from "./dom.js";
import { DRIVERS, JOBS } from "./model.js";

export async function render(root, params, ctx) {
  if (params.length) return renderJob(root, params[0], ctx);
  return renderList(root, ctx);
}

// The state to show: a running job whose driver's key is gone is orphaned (records.py).
function shownState(job, alive) {
  return job.state === "running" && !alive ? "orphaned" : job.state;
}

const STATE_BADGE = { done: "passing", running: "info", failed: "critical", cancelled: "warning",
  interrupted: "warning", orphaned: "critical" };

function progress(job) {
  const counts = job.counts || {};
  const total = job.tasks || 0;
  const done = counts.done || 0;
  const running = counts.running || 0;
  const failed = counts.failed || 0;
  const pct = (n) => (total ? (100 * n) / total : 0);
  return h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": total,
    "aria-valuenow": done, dataset: { done, total } },
    h("span", { class: "done", style: `width:${pct(done)}%` }),
    h("span", { class: "running", style: `width:${pct(running)}%` }),
    h("span", { class: "failed", style: `width:${pct(failed)}%` }),
    h("em", {}, `${done} / ${total}`));
}

async function follow(prefix, onChange, live, name) {
  const listed = await listPrefix(prefix);
  const map = new Map(listed.kvs.map((kv) => [kv.key.slice(prefix.length), kv.value]));
  onChange();
  watchPrefix(prefix, listed.revision + 1, {
    onState: (state, error) => live.set(name, state, error),
    onReset: () => location.reload(),
    onEvent: (type, event) => {
      const id = event.kv.key.slice(prefix.length);
      if (type === "put") map.set(id, event.kv.value);
      else if (type === "delete") map.delete(id);
      else return;
      onChange(id);
    },
  });
  return map;
}

async function renderList(root, { live, base }) {
  const box = h("div", { id: "jobs" });
  replace(root, h("h1", {}, "Jobs"), section("Running and finished jobs", box));
  let jobs = new Map();
  let drivers = new Map();
  const draw = debounce(() => {
    const all = [...jobs.values()].map(parseJson).filter(Boolean)
      .sort((a, b) => (b.submitted_at || 0) - (a.submitted_at || 0));
    replace(box, all.length ? table(["job", "name", "state", "progress", "executor", "workers", "submitted", "updated"],
      all.map((job) => {
        const state = shownState(job, drivers.has(job.id));
        return h("tr", { dataset: { job: job.id, state } },
          h("td", { class: "mono" }, h("a", { href: `${base}/jobs/${encodeURIComponent(job.id)}` }, job.id)),
          h("td", {}, job.name), h("td", {}, h("span", { class: `badge ${STATE_BADGE[state] || ""}` }, state)),
          h("td", { class: "wide" }, progress(job)), h("td", {}, job.executor),
          h("td", { class: "small" }, (job.workers || []).length), h("td", { class: "small" }, when(job.submitted_at)),
          h("td", { class: "small" }, ago(job.updated_at)));
      }), { class: "jobs" }) : h("p", { class: "muted" }, "No job is recorded. Jobs run with the shoal executor (shoal job run --executor shoal) are."));
  }, 50);
  jobs = await follow(JOBS, draw, live, "jobs");
  drivers = await follow(DRIVERS, draw, live, "drivers");
  draw();
}

async function renderJob(root, id, { live, base }) {
  const head = h("div", { id: "job" });
  const lanes = h("div", { id: "stream", class: "stream" });
  const attempts = h("div", { id: "attempts" });
  replace(root,
    h("p", { class: "crumbs" }, h("a", { href: `${base}/jobs` }, "Jobs"), " / ", id),
    h("h1", {}, `Job ${id}`), head,
    section("Task stream", h("p", { class: "small muted" },
      "Recent attempts by worker: each bar is one attempt (striped: a speculative copy of a straggler; red: failed; grey: cancelled or lost)."), lanes),
    section("Attempts", attempts));
  let jobs = new Map();
  let drivers = new Map();
  const draw = debounce(() => {
    const job = parseJson(jobs.get(id) || "");
    if (!job) {
      replace(head, h("p", { class: "muted" }, "No such job is recorded (yet)."));
      return;
    }
    const state = shownState(job, drivers.has(id));
    const c = job.counts || {};
    replace(head,
      h("p", {}, h("span", { class: `badge ${STATE_BADGE[state] || ""}`, id: "job-state", dataset: { state } }, state),
        ` ${job.name} · ${job.executor} executor · priority ${job.priority} · driver ${job.driver ? `${job.driver.host} pid ${job.driver.pid}` : "?"}`),
      progress(job),
      h("p", { class: "small" }, `${c.done || 0} done · ${c.running || 0} running · ${c.pending || 0} pending · ${c.failed || 0} failed · ${c.restored || 0} restored from a checkpoint · submitted ${when(job.submitted_at)}${job.finished_at ? ` · finished ${when(job.finished_at)}` : ""}`),
      job.error ? h("pre", { class: "error" }, job.error) : null);
    drawStream(lanes, attempts, job);
  }, 50);
  jobs = await follow(JOBS, (changed) => (!changed || changed === id) && draw(), live, "jobs");
  drivers = await follow(DRIVERS, (changed) => (!changed || changed === id) && draw(), live, "drivers");
  draw();
}

function drawStream(lanes, attempts, job) {
  const stream = job.stream || [];
  if (!stream.length) {
    replace(lanes, h("p", { class: "muted" }, "No attempt recorded yet."));
    replace(attempts, "");
    return;
  }
  const elapsed = Math.max(0.001, (job.finished_at || job.updated_at || 0) - (job.submitted_at || 0));
  const starts = stream.map((a) => a.started).filter((s) => s !== null);
  const t0 = starts.length ? Math.min(...starts) : 0;
  const t1 = Math.max(elapsed, ...stream.map((a) => a.ended || 0));
  const span = Math.max(0.001, t1 - t0);
  const workers = [...new Set(stream.map((a) => a.worker))].sort();
  replace(lanes,
    h("div", { class: "axis small muted" }, h("span", {}, `${t0.toFixed(2)} s`), h("span", {}, `${t1.toFixed(2)} s after submit`)),
    workers.map((worker) => h("div", { class: "lane", dataset: { worker } },
      h("span", { class: "lane-name mono small" }, worker),
      h("div", { class: "lane-bars" }, stream.filter((a) => a.worker === worker && a.started !== null).map((a) => {
        const left = ((a.started - t0) / span) * 100;
        const width = Math.max(0.5, (((a.ended ?? t1) - a.started) / span) * 100);
        return h("span", {
          class: `bar-attempt ${a.outcome}${a.speculative ? " speculative" : ""}`,
          style: `left:${left}%;width:${width}%`,
          title: `task ${a.task} attempt ${a.attempt}${a.speculative ? " (speculative)" : ""}: ${a.outcome}`,
          dataset: { task: a.task, attempt: a.attempt, outcome: a.outcome },
        });
      })))));
  replace(attempts, table(["task", "attempt", "worker", "outcome", "started", "took", "note"],
    [...stream].reverse().map((a) => h("tr", { dataset: { task: a.task, attempt: a.attempt, outcome: a.outcome } },
      h("td", {}, a.task), h("td", {}, a.attempt), h("td", { class: "mono small" }, a.worker),
      h("td", {}, badge(a.outcome === "finished" ? "passing" : a.outcome === "live" ? "info" : a.outcome === "failed" ? "critical" : "warning", a.outcome)),
      h("td", { class: "small" }, a.started === null ? "queued" : `${a.started.toFixed(2)} s`),
      h("td", { class: "small" }, a.started !== null && a.ended !== null ? `${(a.ended - a.started).toFixed(2)} s` : ""),
      h("td", { class: "small" }, [a.attempt > 1 && !a.speculative ? "retry" : "", a.speculative ? "speculative copy" : "", a.error].filter(Boolean).join(" · ")))),
    { class: "attempts" }));
}
