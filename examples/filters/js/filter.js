// Keeps human edits to a chosen list of wikis: an sse-ingest filter in JavaScript.
//
// Configuration (`--filter-config KEY=VALUE`):
//   wikis=enwiki,dewiki   the wikis whose edits to keep (required; comma-separated)
//   bots=true|false       keep bot edits as well (default: false)
//
// Events whose data is not a JSON object of Wikimedia's recentchange schema are dropped and
// counted in a warning per batch. The host writes each kept event in the pipeline's
// `--format` and keys it by `--partition-key`: this filter only says which events to keep.

import { log } from "sse-ingest:filter/log@0.2.0";

let wikis = new Set();
let keepBots = false;

/** A `config-error` for the host: jco returns a thrown `{ payload }` as the result's error. */
function refuse(error) {
  const thrown = new Error(JSON.stringify(error));
  thrown.payload = error;
  throw thrown;
}

export function configure(pipeline, config) {
  let chosen = null;
  for (const { key, value } of config) {
    if (key === "wikis") {
      const names = value.tag === "text" ? value.val.split(",").map((w) => w.trim()).filter(Boolean) : [];
      if (names.length === 0) {
        refuse({ tag: "invalid-value", val: { key, reason: "give a comma-separated list of wiki names" } });
      }
      chosen = new Set(names);
    } else if (key === "bots") {
      if (value.tag !== "boolean") {
        refuse({ tag: "invalid-value", val: { key, reason: "use true or false" } });
      }
      keepBots = value.val;
    } else {
      refuse({ tag: "unknown-key", val: key });
    }
  }
  if (chosen === null) {
    refuse({ tag: "missing-key", val: "wikis" });
  }
  wikis = chosen;
  log("info", `keeping edits to ${[...wikis].sort().join(", ")} on ${pipeline.sourceUrl}`);
}

export function handle(events) {
  const outputs = [];
  let notJson = 0;
  events.forEach((event, index) => {
    let change;
    try {
      change = JSON.parse(event.data);
    } catch {
      notJson += 1;
      return;
    }
    if (change === null || typeof change !== "object" || Array.isArray(change)) {
      notJson += 1;
      return;
    }
    // Decide here what to keep: this filter keeps edits to the chosen wikis.
    if (change.type !== "edit" || !wikis.has(change.wiki)) return;
    if (change.bot === true && !keepBots) return;
    outputs.push({ tag: "keep", val: index });
  });
  if (notJson > 0) {
    log("warn", `dropped ${notJson} event(s) of this batch whose data is not JSON`);
  }
  return outputs;
}
