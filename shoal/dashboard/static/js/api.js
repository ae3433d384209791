// The member's HTTP API, as the pages use it: JSON in and out, errors in the API's own
// shape ({"error", "message", ...}), and watch streams that resume where they left off.
// Every call and stream carries this tab's ACL token (auth.js); a 401 asks for one, a
// 403 names the permission the token lacks.

import * as auth from "./auth.js";

export class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
    this.code = (body && body.error) || "http_error";
    this.body = body || {};
    this.permission = (body && body.permission) || null;
  }
}

function describe(status, body) {
  if (status === 403 && body && body.permission) {
    return `permission denied: this token does not grant ${body.permission}`;
  }
  return body && body.message ? body.message : `HTTP ${status}`;
}

// The answer of a refused call: a 401 opens the token form as well.
function refused(status, body) {
  if (status === 401) auth.ask();
  return new ApiError(status, body);
}

export async function call(method, path, body) {
  const init = { method, headers: auth.headers({ accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, { error: "unreachable", message: `the member does not answer: ${error}` });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: "bad_response", message: text.slice(0, 300) };
  }
  if (!response.ok) throw refused(response.status, data);
  return data;
}

export const get = (path) => call("GET", path);

// A key as a path segment: every character escaped except "/" (keys are paths).
export function keyPath(key) {
  return encodeURIComponent(key).replace(/%2F/g, "/");
}

// Every key under `prefix`, all pages of one snapshot: {kvs, revision}.
export async function listPrefix(prefix) {
  const kvs = [];
  let after = null;
  let revision = null;
  for (;;) {
    const query = new URLSearchParams({ prefix, limit: "1000" });
    if (after !== null) query.set("after", after);
    if (revision !== null) query.set("revision", String(revision));
    const page = await get(`/api/v1/kv?${query}`);
    kvs.push(...page.kvs);
    revision = page.revision;
    if (!page.more) break;
    after = page.next_after;
  }
  return { kvs, revision };
}

// Follow an SSE stream of the API (a fetch, so its errors are readable: a compacted
// start answers 410 with where history starts). `onEvent(type, data)` gets each event;
// after a disconnect the stream resumes from the last revision seen + 1. `onReset()` is
// called when it cannot resume (history compacted past it): the page must re-list.
export class Stream {
  constructor(url, { onEvent, onReset, onState, startRevision, replay } = {}) {
    this.url = url;
    this.onEvent = onEvent || (() => {});
    this.onReset = onReset || null;
    this.onState = onState || (() => {});
    this.next = startRevision || null;
    this.replay = Boolean(replay);
    this.stopped = false;
    this.controller = null;
    this.run();
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async run() {
    let delay = 250;
    while (!this.stopped) {
      const url = new URL(this.url, location.href);
      if (this.next !== null) url.searchParams.set("start_revision", String(this.next));
      this.controller = new AbortController();
      try {
        const response = await fetch(url, {
          signal: this.controller.signal,
          // fetch, not EventSource, so the stream carries the token as a header (never
          // in the URL, where logs and the history would keep it).
          headers: auth.headers({ accept: "text/event-stream" }),
        });
        if (response.status === 410) {
          // History before `compact_revision` is gone: a replay starts after it; a page
          // that must see every change since its listing re-lists instead.
          const body = await response.json().catch(() => ({}));
          if (this.replay && body.compact_revision) {
            this.next = body.compact_revision + 1;
            continue;
          }
          if (this.onReset) this.onReset();
          return;
        }
        if (response.status === 401 || response.status === 403) {
          // Retrying cannot help: a 401 waits for a token (the page reloads with it), a
          // 403 needs another token.
          const error = refused(response.status, await response.json().catch(() => null));
          this.onState(response.status === 401 ? "unauthorized" : "denied", error);
          return;
        }
        if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
        this.onState("live");
        delay = 250;
        await this.read(response.body);
      } catch (error) {
        if (this.stopped) return;
        this.onState("reconnecting", error);
      }
      if (this.stopped) return;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        this.frame(frame);
      }
    }
  }

  frame(text) {
    let type = "message";
    let id = null;
    const data = [];
    for (const line of text.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") type = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    if (!data.length) return;
    let parsed;
    try {
      parsed = JSON.parse(data.join("\n"));
    } catch {
      return;
    }
    if (id !== null && /^\d+$/.test(id)) this.next = Number(id) + 1;
    if (type === "error") {
      // The member cut the stream off (a slow reader); resume from where it says.
      if (parsed.revision) this.next = parsed.revision;
      return;
    }
    this.onEvent(type, parsed);
  }
}

// A watch of every key under `prefix` from `startRevision`.
export function watchPrefix(prefix, startRevision, handlers) {
  const query = new URLSearchParams({ prefix });
  return new Stream(`/api/v1/watch?${query}`, { ...handlers, startRevision });
}

export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
