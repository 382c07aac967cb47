"""Responses tools of every type, as Codex can take them, and their calls on the way back.

Codex 0.169's app-server takes a client's tools only as JSON-schema functions (`dynamicTools`
entries of type `function`, or a `namespace` of functions: `DynamicToolSpec` in `codex
app-server generate-json-schema --experimental`); nothing freeform and nothing hosted. So:

- a `custom` (freeform) tool reaches the model as a function of one string argument,
  `input`, its grammar or format spelt out in the description; a call of it goes back to the
  client as a `custom_tool_call` whose `input` is that string, and the client's
  `custom_tool_call` / `custom_tool_call_output` items reach Codex as the function call and
  output they stand for;
- `web_search` (and its `web_search_preview` variants) is Codex's own hosted search: served
  when the `webSearch` setting allows it (the thread's `web_search` config), else dropped;
- every other hosted tool (`tool_search`, `local_shell`, `file_search`, `code_interpreter`,
  `image_generation`, `mcp`, ...) is dropped: the model never sees it and the response names
  it (the `x-codexpool-dropped-tools` header and a `warnings` entry). A client that merely
  offers such tools (the Codex CLI offers `tool_search` and `web_search` with every request)
  still gets its answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import ApiError

TOOL_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # OpenAI's rule (translate.parse_tools)
CUSTOM_INPUT = "input"  # the one argument a custom tool's function takes
DROPPED_HEADER = "x-codexpool-dropped-tools"
WEB_SEARCH_TYPES = frozenset(
    {"web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11"}
)


@dataclass(frozen=True)
class ToolPlan:
    """What becomes of a Responses request's `tools`.

    `functions`: the Responses function tools the model is offered (custom tools included,
    as functions); `custom`: the names of the client's custom tools; `web_search`: Codex's
    web search mode for the turn (`"live"`, `"cached"`) or None; `dropped`: the types of
    the hosted tools the model is not offered, in the client's order, each once.
    """

    functions: tuple[dict[str, Any], ...] = ()
    custom: frozenset[str] = frozenset()
    web_search: str | None = None
    dropped: tuple[str, ...] = ()

    def warnings(self) -> list[dict[str, Any]]:
        """Return the response's `warnings` entries (none when nothing was dropped)."""
        if not self.dropped:
            return []
        return [
            {
                "type": "dropped_tools",
                "tools": list(self.dropped),
                "message": "This gateway does not offer tools of type "
                f"{', '.join(self.dropped)}; the model answered without them.",
            }
        ]

    def headers(self) -> dict[str, str]:
        """Return the response headers that name the dropped tools."""
        return {DROPPED_HEADER: ",".join(self.dropped)} if self.dropped else {}


NO_TOOLS = ToolPlan()


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, "invalid_request", param=param)


def plan_tools(tools: Any, *, web_search: bool = False) -> ToolPlan:
    """Sort a Responses `tools` array into functions, custom tools, web search and dropped
    hosted tools; `web_search` is the gateway's `webSearch` setting."""
    if tools is None:
        return NO_TOOLS
    if not isinstance(tools, list):
        raise _bad("`tools` must be an array", "tools")
    functions: list[dict[str, Any]] = []
    custom: set[str] = set()
    dropped: list[str] = []
    search: str | None = None
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if not isinstance(kind, str):
            raise _bad("each tool must be an object with a string `type`", f"tools[{i}]")
        assert isinstance(tool, dict)
        if kind == "function":
            functions.append(
                {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
            )
        elif kind == "custom":
            functions.append(custom_as_function(tool, f"tools[{i}]"))
            custom.add(tool["name"])
        elif kind in WEB_SEARCH_TYPES and web_search:
            # The Codex CLI sends `external_web_access: false` for its cached search.
            live = search == "live" or tool.get("external_web_access") is not False
            search = "live" if live else "cached"
        elif kind not in dropped:
            dropped.append(kind)
    return ToolPlan(tuple(functions), frozenset(custom), search, tuple(dropped))


def custom_as_function(tool: dict[str, Any], param: str) -> dict[str, Any]:
    """Return a custom tool as the function the model is offered: one string, `input`."""
    name = tool.get("name")
    if not isinstance(name, str) or not TOOL_NAME_RE.fullmatch(name):
        raise _bad(
            "a custom tool's name must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'",
            f"{param}.name",
        )
    description = tool.get("description")
    text = description if isinstance(description, str) else ""
    fmt = tool.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar":
        syntax = fmt.get("syntax") or "grammar"
        text += (
            f"\n\nPass the tool's input as the string `{CUSTOM_INPUT}`, raw (not JSON inside "
            f"the string); it must match this {syntax} grammar:\n{fmt.get('definition', '')}"
        )
    else:
        text += f"\n\nPass the tool's input, free text, as the string `{CUSTOM_INPUT}`."
    return {
        "name": name,
        "description": text.strip(),
        "parameters": {
            "type": "object",
            "properties": {CUSTOM_INPUT: {"type": "string", "description": "The tool's input."}},
            "required": [CUSTOM_INPUT],
            "additionalProperties": False,
        },
    }


def custom_input(arguments: str) -> str:
    """Return the `input` text of a call to a custom tool's function (its JSON arguments).

    A model that strays from the schema still gets its call through: a lone string member
    under another name is taken as the input, and anything else is passed on as it came.
    """
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(parsed, dict):
        value = parsed.get(CUSTOM_INPUT)
        if isinstance(value, str):
            return value
        strings = [v for v in parsed.values() if isinstance(v, str)]
        if len(parsed) == 1 and strings:
            return strings[0]
    if isinstance(parsed, str):
        return parsed
    return arguments


def custom_arguments(text: str) -> str:
    """Return the function arguments a custom tool call's `input` stands for."""
    return json.dumps({CUSTOM_INPUT: text}, ensure_ascii=False)


def output_text(output: Any) -> str:
    """Return a tool output (`function_call_output` or `custom_tool_call_output`) as text.

    The output is a string or a list of content parts; Codex's dynamic tools answer with
    text, so text parts are joined and any other part is named in its place.
    """
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = []
        for part in output:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict):
                texts.append(f"[{part.get('type', 'part')} omitted]")
            else:
                texts.append(str(part))
        return "\n".join(texts)
    return "" if output is None else json.dumps(output)
