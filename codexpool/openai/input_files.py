"""`input_file` content parts of the Responses API: text files are inlined into the prompt.

Codex takes text and images from a client, nothing else: a file it could read (plain text,
code, JSON, CSV, ...) travels as text, headed by its name; anything else (a PDF, an office
document, a file by id or URL) is refused with a 400 naming the part, so a client learns at
once instead of getting an answer that silently ignored its file.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..errors import ApiError

MAX_FILE_BYTES = 2 * 1024 * 1024  # one inlined file; the body limit bounds the sum
# Media types that are text whatever their top-level type says.
_TEXT_TYPES = {
    "application/json",
    "application/xml",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/javascript",
    "application/x-sh",
    "application/sql",
    "application/csv",
}
_UNTYPED = {"", "application/octet-stream"}


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, "invalid_request", param=param)


def _is_text(media_type: str) -> bool:
    return (
        media_type.startswith("text/") or media_type in _TEXT_TYPES or media_type.endswith("+json")
    )


def file_part_text(part: dict[str, Any], param: str) -> str:
    """Return an `input_file` part as prompt text, or raise a 400 naming the part."""
    if part.get("file_id") is not None:
        raise _bad(
            "input_file with `file_id` is not supported (the gateway has no Files API);"
            " send the file inline as `file_data`",
            param,
        )
    if part.get("file_url") is not None:
        raise _bad(
            "input_file with `file_url` is not supported; send the file inline as `file_data`",
            param,
        )
    data = part.get("file_data")
    name = part.get("filename")
    if not isinstance(data, str):
        raise _bad("an input_file part needs `file_data` (a data URL or base64)", param)
    if name is not None and not isinstance(name, str):
        raise _bad("`filename` must be a string", param)
    media_type = ""
    if data.startswith("data:"):
        head, sep, data = data[5:].partition(",")
        if not sep or not head.endswith(";base64"):
            raise _bad("input_file `file_data` must be a base64 data URL", param)
        media_type = head[: -len(";base64")].split(";")[0].strip().lower()
    if len(data) > MAX_FILE_BYTES * 4 // 3 + 4:
        raise _bad(f"input_file is larger than {MAX_FILE_BYTES} bytes", param)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("input_file `file_data` is not valid base64", param) from None
    label = name or "file"
    if not (_is_text(media_type) or media_type in _UNTYPED):
        raise _bad(
            f"input_file {label!r} is {media_type}: only text files can be passed to Codex"
            " (they are inlined); extract its text first",
            param,
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if "\x00" in text or (raw and not text):
        raise _bad(
            f"input_file {label!r} is not UTF-8 text: only text files can be passed to Codex",
            param,
        )
    return f"<file name={label!r}>\n{text}\n</file>"
