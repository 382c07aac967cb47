"""What every JSON request body must satisfy beyond being JSON: bounded depth, integers of a
sane size, and text that is valid Unicode.

`json.loads` accepts all three kinds of trouble: a lone UTF-16 surrogate escape (`"\\ud800"`)
becomes a `str` that cannot be encoded (bcrypt, SQLite and codex then fail deep inside: a 500,
or a turn that waits for its timeout while holding a slot); a schema nested hundreds of levels
deep parses fine but codex's reader gives up on it silently; and a 5,000-digit integer raises a
bare ValueError. `validate.read_json_object` parses with `parse_int=parse_int` and calls
`find_problem` once, so every route refuses these bodies at once with a 400 naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 64  # containers; OpenAI allows schemas 10 levels deep (about 25 containers)
MAX_INT_DIGITS = 1000  # Python refuses past 4,300; no field of any API needs a tenth of that
MAX_PARAM_LEN = 200  # a field path named in an error (keys are client text of any length)


class HugeInt(str):
    """The text of an integer literal too long to convert (kept so the field can be named)."""


def parse_int(text: str) -> int | HugeInt:
    """Convert an integer literal for `json.loads`, deferring over-long ones to `find_problem`."""
    digits = len(text) - (text[0] == "-")
    return HugeInt(text) if digits > MAX_INT_DIGITS else int(text)


@dataclass(frozen=True)
class Problem:
    """Why a body is refused and where: `param` is a path like `messages[0].content`."""

    param: str | None
    message: str


def _param(path: tuple[str | int, ...]) -> str | None:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out[:MAX_PARAM_LEN] or None


def _lone_surrogate(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def find_problem(body: Any) -> Problem | None:
    """Return the first problem of a parsed body, or None when it is fine.

    Iterative, so depth cannot exhaust the stack. Every body is first walked without the
    field paths (building a path tuple per value was most of the check's time); only a body
    with a problem is walked again to name its field.
    """
    return _find_problem(body) if _has_problem(body) else None


def _has_problem(body: Any) -> bool:
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if isinstance(item, HugeInt) or _lone_surrogate(item):
                return True
            continue
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                return True
            depth += 1
            for key, value in item.items():
                if _lone_surrogate(key):
                    return True
                stack.append((value, depth))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                return True
            depth += 1
            stack.extend([(value, depth) for value in item])
    return False


def _find_problem(body: Any) -> Problem | None:
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(body, 1, ())]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, HugeInt):
            return Problem(
                _param(path),
                f"{_param(path) or 'the body'} holds an integer with more than "
                f"{MAX_INT_DIGITS} digits.",
            )
        if isinstance(item, str):
            if _lone_surrogate(item):
                return _unicode_problem(path)
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            # Name the field the deep value hangs under, not all of its levels.
            return Problem(
                _param(path[:4]),
                f"Request body is nested too deeply (more than {MAX_DEPTH} "
                f"levels) under {_param(path[:4]) or 'its top level'}.",
            )
        if isinstance(item, dict):
            for key, value in item.items():
                if _lone_surrogate(key):
                    return _unicode_problem(path)
                stack.append((value, depth + 1, (*path, key)))
        else:
            stack.extend((value, depth + 1, (*path, i)) for i, value in enumerate(item))
    return None


def _unicode_problem(path: tuple[str | int, ...]) -> Problem:
    where = _param(path) or "the body"
    return Problem(
        _param(path),
        f"{where} holds a lone UTF-16 surrogate escape (such as \\ud800), which is not text; "
        "send valid Unicode.",
    )
