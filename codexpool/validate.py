"""Reading request bodies: JSON parsing, the checks every body shares, and decoding into the
msgspec types that declare each route's body once (for validation and the OpenAPI document).

Every body goes the same way: `read_json_object` parses it (a 400/413/415 saying why when it is
no JSON object) and `jsoncheck` refuses depth, huge integers and lone surrogates; then `decode`
turns the object into the route's declared type, strictly (`"true"` stays a string and is
refused where a boolean is declared), and a mismatch becomes OpenAI's 400 error whose `param`
names the field (`messages[1].role`). What a type cannot say (one field's rule depending on
another, content part semantics) stays in small plain functions after decoding.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar, TypeVar

import msgspec
from aiohttp import web

from . import jsoncheck
from .errors import ApiError

T = TypeVar("T")


# Every digit to "0", every other byte to " ": a long number shows as a long run of "0".
_DIGIT_RUNS = bytes(0x30 if 0x30 <= c <= 0x39 else 0x20 for c in range(256))
_LONG_NUMBER = b"0" * (jsoncheck.MAX_INT_DIGITS + 1)
_HUGE = 10**jsoncheck.MAX_INT_DIGITS  # the smallest integer of more than MAX_INT_DIGITS digits


def _parse_fast(raw: bytes) -> dict[str, Any] | None:
    """Return the body parsed by msgspec (several times json's speed) when it is plainly fine,
    else None, and parse_json_object takes the exact path, which names what is wrong.

    msgspec's decoder refuses lone surrogates, invalid UTF-8, NaN and integers past 4,300
    digits by itself (any refusal: None); what it accepts and jsoncheck would not is a body
    nested deeper than MAX_DEPTH or an integer of more than MAX_INT_DIGITS digits, looked for
    only when the bytes hold enough brackets, or a long enough run of digits, for one.
    """
    try:
        data = msgspec.json.decode(raw)
    except (msgspec.MsgspecError, RecursionError, ValueError):
        return None
    if type(data) is not dict:
        return None
    if raw.count(b"{") + raw.count(b"[") > jsoncheck.MAX_DEPTH and _too_deep(data):
        return None
    if _LONG_NUMBER in raw.translate(_DIGIT_RUNS) and _huge_int(data):
        return None
    return data


def _too_deep(data: dict[str, Any]) -> bool:
    level: list[Any] = [data]
    for _ in range(jsoncheck.MAX_DEPTH):
        below: list[Any] = []
        for item in level:
            values = item.values() if type(item) is dict else item
            below += [v for v in values if type(v) is dict or type(v) is list]
        if not below:
            return False
        level = below
    return True


def _huge_int(data: dict[str, Any]) -> bool:
    stack: list[Any] = [data]
    while stack:
        item = stack.pop()
        for value in item.values() if type(item) is dict else item:
            if type(value) is int:
                if not -_HUGE < value < _HUGE:
                    return True
            elif type(value) is dict or type(value) is list:
                stack.append(value)
    return False


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Parse raw bytes as a JSON object passing the shared checks, or raise a 400 saying why."""
    data = _parse_fast(raw)
    if data is not None:
        return data
    if not raw.strip():
        raise ApiError(400, "Request body is empty; send a JSON object.", "invalid_json")
    try:
        # Not orjson nor msgspec's decoder: integers past 64 bits must stay exact integers
        # (jsoncheck names the over-long ones; require_codex_json refuses them in schemas).
        data = json.loads(raw, parse_int=jsoncheck.parse_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}", "invalid_json") from exc
    except RecursionError as exc:  # e.g. 5,000 nested arrays: the decoder gives up (was a 500)
        raise ApiError(400, "Request body is nested too deeply.", "invalid_json") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "Request body must be a JSON object.", "invalid_json")
    # The one place every route's body passes: depth, integer size and valid Unicode.
    problem = jsoncheck.find_problem(data)
    if problem is not None:
        raise ApiError(400, problem.message, "invalid_json", param=problem.param)
    return data


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """Parse the request body as a JSON object or raise a 400/415 ApiError saying why."""
    ctype = request.content_type
    if ctype not in ("application/json", "application/octet-stream", "text/plain", ""):
        raise ApiError(
            415, f"Content-Type must be application/json, got {ctype}", "unsupported_media_type"
        )
    raw = await request.read()  # client_max_size turns an oversized body into a 413 here
    return parse_json_object(raw)


async def read_optional_object(request: web.Request) -> dict[str, Any]:
    """Parse a JSON object body, treating an empty body as `{}` (for optional fields)."""
    if not request.body_exists or request.content_length == 0:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    return await read_json_object(request)


async def read_body(request: web.Request, kind: type[T], codes: dict[str, str] | None = None) -> T:
    """Read the request's JSON object and decode it into the route's declared body type."""
    return decode(await read_json_object(request), kind, codes=codes)


async def read_optional_body(request: web.Request, kind: type[T]) -> T:
    """Like read_body, an empty body counting as `{}` (every field of `kind` optional)."""
    return decode(await read_optional_object(request), kind)


def whole_number(raw: str, name: str, low: int, high: int) -> int:
    """Parse a query parameter of ASCII digits within [low, high] or raise a 400 naming it.

    `str.isdigit()` alone is not enough: it accepts characters such as "²" that `int()` then
    rejects with a ValueError (a 500), and other scripts' digits the docs do not promise.
    """
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ApiError(
            400, f"{name} must be a whole number {low}-{high}", "invalid_request", param=name
        )
    return int(raw)


# --- declared types ---------------------------------------------------------------------------


def json_int(value: Any) -> int | None:
    """Return `value` as an int if JSON-wise it is a whole number (`528` or `528.0`), else None.

    JSON Schema counts 528.0 as an integer and some encoders write whole numbers that way;
    booleans, fractions, NaN and infinities are not integers.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class WholeNumber(int):
    """Base of the bounded integer field types (a subclass sets `low` and `high`): JSON
    Schema's integer, so `528.0` counts as 528, unlike msgspec's own `int`; booleans and
    fractions do not."""

    low: ClassVar[int] = 0
    high: ClassVar[int | None] = None


# A string with some non-whitespace text (JSON Schema's `pattern` is searched, not matched).
NON_BLANK = r"\S"


def _dec_hook(kind: type, value: Any) -> Any:
    if issubclass(kind, WholeNumber):
        number = json_int(value)
        high = kind.high
        if number is None or number < kind.low or (high is not None and number > high):
            upper = f" to {high}" if high is not None else " or more"
            raise ValueError(f"Expected an integer from {kind.low}{upper}")
        return kind(number)
    raise NotImplementedError(kind)


def schema_hook(kind: type) -> dict[str, Any]:
    """JSON Schema of the custom field types, for msgspec's schema generation."""
    if issubclass(kind, WholeNumber):
        schema: dict[str, Any] = {"type": "integer", "minimum": kind.low}
        if kind.high is not None:
            schema["maximum"] = kind.high
        return schema
    raise NotImplementedError(kind)


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"(?:missing required|unknown) field `(?P<name>[^`]*)`")


def _param(error: msgspec.ValidationError) -> tuple[str, str | None]:
    """Split msgspec's message into (what is wrong, the field path OpenAI-style)."""
    text = str(error)
    path = ""
    found = _AT.search(text)
    if found is not None:
        path = found["path"]
        text = text[: found.start()]
    field = _FIELD.search(text)
    if field is not None:  # the path is the object's; the field is the one it names
        path += "." + field["name"]
    param = path.removeprefix(".")[: jsoncheck.MAX_PARAM_LEN]
    return text, param or None


def decode(data: Any, kind: type[T], *, codes: dict[str, str] | None = None, prefix: str = "") -> T:
    """Decode parsed JSON into `kind`, or raise a 400 naming the field in `param`.

    `codes` maps a top-level field to the error code its failures carry (routes that had one
    code per field keep them); otherwise the code is `invalid_request`. `prefix` is the
    field path `data` hangs under when it is a part of a body.
    """
    try:
        return msgspec.convert(data, kind, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        text, param = _param(exc)
        if prefix:
            param = prefix + ("" if param is None or param.startswith("[") else ".") + (param or "")
        code = "invalid_request"
        if codes and param:
            code = codes.get(re.split(r"[.\[]", param, maxsplit=1)[0], code)
        where = f"`{param}`" if param else "the body"
        raise ApiError(400, f"Invalid {where}: {text}", code, param=param) from None
