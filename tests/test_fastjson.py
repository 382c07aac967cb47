"""orjson on the hot path must not change what the standard library would have done."""

from __future__ import annotations

import json

import pytest

from codexpool import fastjson


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None, True], "b": 'ünïcödé ✓ 🚀 \u2028 \x00\x1f "q" \\'},
        -(2**63),
        2**64 - 1,
        [[[]]],
    ],
)
def test_round_trip_matches_json(value: object) -> None:
    encoded = fastjson.dumps(value)
    assert json.loads(encoded) == value
    assert fastjson.loads(encoded) == json.loads(encoded)
    assert fastjson.dumps_line(value).endswith(b"\n")
    assert json.loads(fastjson.dumps_line(value)) == value


def test_lone_surrogates_do_not_raise() -> None:
    """Text from upstream may hold a lone surrogate: a stream replaces it, JSON-RPC escapes
    it as it came."""
    assert json.loads(fastjson.dumps({"t": "a\ud800b"})) == {"t": "a?b"}
    assert fastjson.dumps_line({"t": "a\ud800b"}) == b'{"t":"a\\ud800b"}\n'
    assert fastjson.loads(b'"a\\ud800b"') == "a\ud800b"  # orjson refuses, json reads it


def test_what_json_reads_fastjson_reads() -> None:
    assert fastjson.loads(b"[NaN, 1]")[1] == 1  # NaN literal: json's reading
    with pytest.raises(ValueError):
        fastjson.loads(b"{not json")
    with pytest.raises(RecursionError):
        fastjson.loads(b"[" * 100_000 + b"]" * 100_000)
