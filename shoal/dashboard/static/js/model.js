// What the pages know about the key space (docs/api.md): where instances and config
// items live, and how a watch event reads as something a person cares about.

import { parseJson } from "./api.js";

export const REGISTRY = "/registry/services/";
export const CONFIG = "/config/";
export const JOBS = "/compute/jobs/";
export const DRIVERS = "/compute/drivers/";

// "/registry/services/users/instances/u1" -> {service: "users", id: "u1"}, else null.
export function instanceKey(key) {
  if (!key.startsWith(REGISTRY)) return null;
  const parts = key.slice(REGISTRY.length).split("/");
  if (parts.length !== 3 || parts[1] !== "instances") return null;
  return { service: parts[0], id: parts[2] };
}

export function healthy(instance) {
  return instance && instance.health && instance.health.status !== "critical";
}

// Instances by service from a map key -> instance record.
export function byService(instances) {
  const out = new Map();
  for (const [key, record] of instances) {
    const where = instanceKey(key);
    if (!where || !record) continue;
    if (!out.has(where.service)) out.set(where.service, []);
    out.get(where.service).push(record);
  }
  return out;
}

// Follows instance records: `apply(event)` keeps the map current and returns a history
// entry when the event changed something a person would call news (else null).
const GONE = Symbol("gone");

export class InstanceLog {
  constructor() {
    this.instances = new Map(); // key -> record, as of the listing plus later events
    this.listed = new Map(); // key -> status at the listing
    this.seen = new Map(); // key -> status in the last event seen (replays included)
  }

  load(kvs) {
    for (const kv of kvs) {
      if (!instanceKey(kv.key)) continue;
      const record = parseJson(kv.value);
      if (record) {
        this.instances.set(kv.key, record);
        this.listed.set(kv.key, record.health && record.health.status);
      }
    }
  }

  // The status `key` had before `event`: from the replay, else the event's prev_kv, else
  // (for an event after the listing) the listing; undefined: it did not exist.
  before(key, event, current) {
    if (this.seen.has(key)) {
      const status = this.seen.get(key);
      return status === GONE ? undefined : status;
    }
    if (event.prev_kv) return (parseJson(event.prev_kv.value) || {}).health?.status;
    if (current && this.listed.has(key)) return this.listed.get(key);
    return undefined;
  }

  // `current`: the event is newer than the listing, so it changes the state too.
  apply(event, current) {
    const key = event.kv.key;
    const where = instanceKey(key);
    if (!where) return null;
    const before = this.before(key, event, current);
    const name = `${where.service}/${where.id}`;
    const base = { kind: "instance", revision: event.revision, service: where.service, instance: where.id };
    if (event.type === "delete") {
      this.seen.set(key, GONE);
      if (current) this.instances.delete(key);
      return { ...base, status: "gone", at: null, text: `${name} left the registry` };
    }
    const record = parseJson(event.kv.value);
    if (!record) return null;
    const status = record.health ? record.health.status : "passing";
    this.seen.set(key, status);
    if (current) this.instances.set(key, record);
    const reason = record.health && record.health.reason ? ` (${record.health.reason})` : "";
    const at = record.health ? record.health.since : null;
    if (before === undefined) {
      return { ...base, status, at: record.registered_at || at, text: `${name} registered, ${status}` };
    }
    if (before !== status) return { ...base, status, at, text: `${name} is ${status}${reason}` };
    return null;
  }
}

// A config watch event as news, or null.
export function configNews(event) {
  const key = event.kv.key;
  if (!key.startsWith(CONFIG)) return null;
  const parts = key.slice(CONFIG.length).split("/");
  if (parts.length < 3) return null;
  const item = `${parts[0]}/${parts[1]}`;
  const value = event.type === "put" ? parseJson(event.kv.value) : null;
  if (parts[2] === "meta") {
    if (event.type === "delete") return { kind: "config", item, revision: event.revision, at: null, text: `config ${item} deleted` };
    return { kind: "config", item, revision: event.revision, at: value && value.updated,
      text: `config ${item} is now version ${value ? value.version : "?"}` };
  }
  if (parts[2] === "beta") {
    if (event.type === "delete") return { kind: "config", item, revision: event.revision, at: null, text: `config ${item}: gray release ended` };
    const selector = value ? Object.entries(value.selector || {}).map(([k, v]) => `${k}=${v}`).join(",") : "";
    return { kind: "config", item, revision: event.revision, at: value && value.time,
      text: `config ${item}: gray release for ${selector || "everyone"}` };
  }
  return null;
}
