"""A JSON transcoder for the event log that is fast for plain payloads.

User events carry JSON-native values only and are encoded and decoded by
orjson. Aggregate events of the library (segment and campaign definitions)
carry datetimes and other registered types: those are encoded by orjson too,
passing anything it does not know to eventsourcing's registered transcodings,
and decoded by the library's own object-hook decoder. Property and trait keys
are validated never to start with "_", so `"_type_"` marks the slow path.
"""

from __future__ import annotations

from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder

_TYPED_MARKER = b'"_type_"'
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class FastJSONTranscoder(JSONTranscoder):
    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=self._encode_obj, option=_OPTIONS)

    def decode(self, data: bytes) -> Any:
        if _TYPED_MARKER in data:
            return super().decode(data)
        return orjson.loads(data)
