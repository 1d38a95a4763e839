// Builds a JavaScript filter into a component with ComponentizeJS (the engine under
// `jco componentize`; its API is called directly because jco's command, at the pinned
// version, cannot read a WIT directory from this Node.js: "failed to get path metadata").
//
//   node build.mjs SOURCE.js WIT_DIR OUT.wasm
//
// Every WASI feature of the runtime is disabled, so the component imports only what the
// filter itself imports from sse-ingest:filter.
import { componentize } from "@bytecodealliance/componentize-js";
import { readFile, writeFile } from "node:fs/promises";

const [source, witPath, out] = process.argv.slice(2);
if (!source || !witPath || !out) {
  console.error("usage: node build.mjs SOURCE.js WIT_DIR OUT.wasm");
  process.exit(2);
}
const { component } = await componentize(await readFile(source, "utf8"), {
  witPath,
  worldName: "filter",
  disableFeatures: ["stdio", "random", "clocks", "http", "fetch-event"],
});
await writeFile(out, component);
