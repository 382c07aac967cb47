"""JSON on the hot path: orjson where it can, the standard library where orjson refuses.

Every streamed answer parses about eight JSON-RPC lines from codex and encodes its chunks;
orjson does that several times faster. Where orjson refuses (NaN literals, lone surrogates,
nesting deeper than 1,024) the standard library takes over, so those inputs behave as with
`json`. One difference remains: orjson reads an integer beyond 64 bits as a float. That is
harmless for what codex writes (its integers are 64-bit), so client request bodies, where a
schema may hold any integer, are parsed with `json` (validate.read_json_object).
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(data: bytes | str) -> Any:
    """Parse JSON text; raises json.JSONDecodeError (a ValueError) or RecursionError as
    `json.loads` would."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumps(obj: Any) -> bytes:
    """Encode compactly as UTF-8 (a lone surrogate becomes U+FFFD rather than an error)."""
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "replace")


def dumps_line(obj: Any) -> bytes:
    """Encode one newline-terminated JSON-RPC message (ASCII-escaped where orjson refuses, so
    a lone surrogate reaches codex as the escape it came in as)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode() + b"\n"
