"""An sse-ingest filter in Python, against the contract sse-ingest:filter@0.2.0
(wit/filter/filter.wit documents every item of it). Build it with ./build.sh; check it
with ./test.sh."""

import wit_world
from wit_world.imports import types
from componentize_py_types import Err


class WitWorld(wit_world.WitWorld):
    def configure(self, pipeline: types.PipelineInfo, config: list) -> None:
        # Read the `--filter-config` keys this filter knows; refuse any other, so a typo is
        # an error at start or swap time.
        for entry in config:
            raise Err(types.ConfigError_UnknownKey(entry.key))

    def handle(self, events: list) -> list:
        outputs = []
        for index, event in enumerate(events):
            # Decide here what to write for the event: keep it as it is
            # (types.Output_Keep(index): the host writes it in the pipeline's format and keys
            # it), write bytes of your own (types.Output_Record(types.OwnRecord(index, data,
            # None))), or nothing, to filter it out.
            outputs.append(types.Output_Keep(index))
        return outputs
