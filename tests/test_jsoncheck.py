"""The one body check every route shares: depth, integer size, valid Unicode (issue 14 item 7)."""

from __future__ import annotations

import json
from typing import Any

import pytest

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
