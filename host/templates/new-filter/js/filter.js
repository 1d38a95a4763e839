// An sse-ingest filter in JavaScript, against the contract sse-ingest:filter@0.2.0
// (wit/filter/filter.wit documents every item of it). Build it with ./build.sh; check it
// with ./test.sh.

/** A `config-error` for the host: a thrown `{ payload }` becomes the result's error. */
function refuse(error) {
  const thrown = new Error(JSON.stringify(error));
  thrown.payload = error;
  throw thrown;
}

export function configure(pipeline, config) {
  // Read the `--filter-config` keys this filter knows; refuse any other, so a typo is an
  // error at start or swap time.
  for (const { key } of config) {
    refuse({ tag: "unknown-key", val: key });
  }
}

export function handle(events) {
  // Decide here what to write for each event: keep it as it is ({ tag: "keep", val: index }:
  // the host writes it in the pipeline's format and keys it), write bytes of your own
  // ({ tag: "record", val: { event: index, data, partitionKey: undefined } }), or nothing, to
  // filter it out.
  return events.map((_event, index) => ({ tag: "keep", val: index }));
}
