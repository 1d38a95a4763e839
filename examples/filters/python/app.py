"""Keeps human edits to a chosen list of wikis: an sse-ingest filter in Python.

Configuration (`--filter-config KEY=VALUE`):
  wikis=enwiki,dewiki   the wikis whose edits to keep (required; comma-separated)
  bots=true|false       keep bot edits as well (default: false)

Events whose data is not a JSON object of Wikimedia's recentchange schema are dropped and
counted in a warning per batch. The host writes each kept event in the pipeline's
`--format` and keys it by `--partition-key`: this filter only says which events to keep.
"""

import json

import wit_world
from wit_world.imports import log, types
from componentize_py_types import Err

_wikis: frozenset = frozenset()
_keep_bots = False


class WitWorld(wit_world.WitWorld):
    def configure(self, pipeline: types.PipelineInfo, config: list) -> None:
        global _wikis, _keep_bots
        wikis = None
        for entry in config:
            value = entry.value
            if entry.key == "wikis":
                if not isinstance(value, types.ConfigValue_Text) or not value.value.strip():
                    raise Err(types.ConfigError_InvalidValue(
                        types.InvalidValue("wikis", "give a comma-separated list of wiki names")))
                wikis = frozenset(w.strip() for w in value.value.split(",") if w.strip())
            elif entry.key == "bots":
                if not isinstance(value, types.ConfigValue_Boolean):
                    raise Err(types.ConfigError_InvalidValue(
                        types.InvalidValue("bots", "use true or false")))
                _keep_bots = value.value
            else:
                raise Err(types.ConfigError_UnknownKey(entry.key))
        if wikis is None:
            raise Err(types.ConfigError_MissingKey("wikis"))
        _wikis = wikis
        log.log(types.Level.INFO,
                f"keeping edits to {', '.join(sorted(_wikis))} on {pipeline.source_url}")

    def handle(self, events: list) -> list:
        outputs = []
        not_json = 0
        for index, event in enumerate(events):
            try:
                change = json.loads(event.data)
            except ValueError:
                not_json += 1
                continue
            if not isinstance(change, dict):
                not_json += 1
                continue
            # Decide here what to keep: this filter keeps edits to the chosen wikis.
            if change.get("type") != "edit" or change.get("wiki") not in _wikis:
                continue
            if change.get("bot") is True and not _keep_bots:
                continue
            outputs.append(types.Output_Keep(index))
        if not_json:
            log.log(types.Level.WARN, f"dropped {not_json} event(s) of this batch whose data is not JSON")
        return outputs
