"""The one body check every route shares: depth, integer size, valid Unicode (issue 14 item 7)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codexpool.jsoncheck import MAX_DEPTH, MAX_INT_DIGITS, find_problem, parse_int


def parsed(text: str) -> Any:
    return json.loads(text, parse_int=parse_int)


def nested(depth: int) -> str:
    return '{"a":' * (depth - 1) + "[]" + "}" * (depth - 1)


def test_depth_limit_is_exact() -> None:
    assert find_problem(parsed(nested(MAX_DEPTH))) is None
    problem = find_problem(parsed(nested(MAX_DEPTH + 1)))
    assert problem is not None and problem.param == "a.a.a.a"


@pytest.mark.parametrize("sign", ["", "-"])
def test_integer_digits(sign: str) -> None:
    ok = parsed('{"n": ' + sign + "9" * MAX_INT_DIGITS + "}")
    assert find_problem(ok) is None and ok["n"] == int(sign + "9" * MAX_INT_DIGITS)
    problem = find_problem(parsed('{"x": [1, {"n": ' + sign + "9" * (MAX_INT_DIGITS + 1) + "}]}"))
    assert problem is not None and problem.param == "x[1].n"


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ('{"messages": [{"content": "a\\udc00"}]}', "messages[0].content"),
        ('{"tools": [{"\\ud800": 1}]}', "tools[0]"),
        ('{"\\udfff": 1}', None),
    ],
)
def test_lone_surrogates_are_named(text: str, param: str | None) -> None:
    problem = find_problem(parsed(text))
    assert problem is not None and problem.param == param
    assert "surrogate" in problem.message


def test_valid_text_passes() -> None:
    body = parsed('{"p": "caf\\u00e9 \\ud83d\\ude00 ✓", "n": -3, "f": 1e400, "b": [true, null]}')
    assert find_problem(body) is None
    assert body["p"] == "café 😀 ✓"


# --- validate.parse_json_object: msgspec's fast path must refuse and keep exactly the same --


def _exact(raw: bytes) -> Any:
    """What the exact path (json + find_problem) makes of a body: the object, or the problem."""
    try:
        data = json.loads(raw, parse_int=parse_int)
    except (ValueError, RecursionError):
        return "invalid"
    if not isinstance(data, dict):
        return "not an object"
    problem = find_problem(data)
    return data if problem is None else problem


def _both(raw: bytes) -> tuple[Any, Any]:
    from codexpool.errors import ApiError
    from codexpool.validate import parse_json_object

    try:
        got: Any = parse_json_object(raw)
    except ApiError as exc:
        got = exc
    return _exact(raw), got


def _same(raw: bytes) -> None:
    from codexpool.errors import ApiError
    from codexpool.jsoncheck import Problem

    exact, got = _both(raw)
    if isinstance(exact, dict):
        assert got == exact and type(got) is dict
        assert json.dumps(got) == json.dumps(exact)  # the same types too (1 vs 1.0, key order)
    else:
        assert isinstance(got, ApiError) and got.status == 400, raw[:80]
        if isinstance(exact, Problem):
            assert (got.param, got.message) == (exact.param, exact.message)


@pytest.mark.parametrize(
    "raw",
    [
        nested(MAX_DEPTH).encode(),
        nested(MAX_DEPTH + 1).encode(),
        ('{"x": [' * 40 + "1" + "]}" * 40).encode(),  # 80 levels through lists and objects
        ('{"n": ' + "9" * MAX_INT_DIGITS + "}").encode(),
        ('{"x": [1, {"n": -' + "9" * (MAX_INT_DIGITS + 1) + "}]}").encode(),
        ('{"n": ' + "9" * 5000 + "}").encode(),
        ('{"s": "' + "9" * 5000 + '"}').encode(),  # many digits, but text
        b'{"messages": [{"content": "a\\udc00"}]}',
        b'{"\\udfff": 1}',
        b'{"f": 1e400, "g": NaN, "h": -0, "i": 1.0, "j": 10000000000000000000000}',
        b'{"a": 1, "a": 2}',
        b'\xef\xbb\xbf{"a": 1}',
        b'{"a": "\xff"}',
        '{"a": "caf\u00e9 \\ud83d\\ude00"}'.encode(),
        b"[1, 2]",
        b"  ",
        b'{"a": [{}, [], [[{"b": null}]]], "c": true}',
    ],
)
def test_fast_path_keeps_and_refuses_as_the_exact_path(raw: bytes) -> None:
    _same(raw)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.sampled_from([10**1000, -(10**1000), 10**999, 2**64]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(body=st.dictionaries(st.text(max_size=4), JSON), depth=st.integers(0, 70))
def test_fast_path_matches_on_generated_bodies(body: dict[str, Any], depth: int) -> None:
    raw = json.dumps({"x": [body] * 2, **body} if depth % 3 else body).encode()
    _same(raw)
    _same(b'{"w": ' + b"[" * depth + raw + b"]" * depth + b"}")
