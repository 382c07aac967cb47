"""The request bodies of the OpenAI-compatible routes, declared once.

Each type here is both the validation (`validate.decode` turns parsed JSON into it, strictly,
and a mismatch is a 400 naming the field) and the OpenAPI document's schema (msgspec emits the
JSON Schema). Unknown fields are ignored, as OpenAI clients send many optional ones. What a
type cannot say stays in plain code after decoding (translate.py, responses.py): which content
part types and tool types are supported, image URL rules, cross-field rules such as
`tool_choice` naming one of the `tools`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec
from msgspec import Meta, Struct

from ..validate import NON_BLANK, WholeNumber

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max", "ultra"]
ROLES: tuple[str, ...] = get_args(Role)
REASONING_EFFORTS: tuple[str, ...] = get_args(Effort)
MAX_MESSAGES = 2_000
TOOL_NAME_PATTERN = "^[a-zA-Z0-9_-]{1,64}$"


class TokenLimit(WholeNumber):
    low, high = 1, 10_000_000


class TimeoutMs(WholeNumber):
    low, high = 1, 86_400_000


ToolName = Annotated[
    str, Meta(pattern=TOOL_NAME_PATTERN, description="OpenAI's (and Codex's) function name rule.")
]
JsonSchema = Annotated[dict[str, Any], Meta(description="A JSON Schema object.")]
ModelName = Annotated[str, Meta(pattern=NON_BLANK, examples=["codex"])]

IMAGE_URL_DESCRIPTION = (
    "A base64 data URL of a PNG, JPEG, GIF or WebP image (10 MiB), or an https URL the gateway "
    "downloads first (public addresses only; maxImageBytes, maxImageBytesPerRequest, "
    "imageFetchTimeoutMs, at most 3 redirects)."
)
ImageUrl = Annotated[
    str,
    Meta(
        pattern="^(https://|data:image/(png|jpeg|gif|webp)(;[^,]*)?;base64,)",
        description=IMAGE_URL_DESCRIPTION,
    ),
]
TOOL_CHOICE_NOTE = (
    "`none` hides the tools from the model; `required` and a named function become an "
    "instruction in the thread's instructions (Codex always asks the model with `auto`)."
)


class ImageRef(Struct, kw_only=True):
    """An image part's `image_url` object."""

    url: str
    detail: str | None = None


class ContentPart(Struct, kw_only=True):
    """One part of a message's content. Supported types: `text`, `input_text`, `output_text`
    (with `text`), `refusal`, `image_url` and `input_image` (with `image_url`), `file` (with
    `file`); other types are refused after decoding."""

    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: str | ImageRef | None = None
    file: (
        Annotated[
            dict[str, Any],
            Meta(
                description="A text file as a base64 data URL (or base64) in `file_data`, with its "
                "`filename`, inlined into the prompt; other files and `file_id` get a 400."
            ),
        ]
        | None
    ) = None


class FunctionCall(Struct, kw_only=True):
    """The function of an assistant message's tool call."""

    name: str | None = None
    arguments: str | None = None


class ToolCall(Struct, kw_only=True):
    """A tool call of an earlier assistant message."""

    function: FunctionCall
    id: str | None = None
    type: str | None = None


class Message(Struct, kw_only=True):
    """One chat message. `content` is text, or a list of parts (plain strings count as text)."""

    role: Role
    content: str | list[str | ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None


Messages = Annotated[
    list[Message],
    Meta(
        min_length=1,
        max_length=MAX_MESSAGES,
        description="At least one message besides system/developer ones, and some text "
        "that is not blank; at most 8 images in all.",
    ),
]


class FunctionSpec(Struct, kw_only=True):
    """A function the model may call."""

    name: ToolName
    description: str | None = None
    parameters: JsonSchema = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


class ChatTool(Struct, kw_only=True):
    """A chat tool: only `function` tools exist in chat completions."""

    type: Literal["function"]
    function: FunctionSpec


class ChoiceFunction(Struct, kw_only=True):
    name: str


class NamedToolChoice(Struct, kw_only=True):
    """`{"type": "function", "function": {"name": ...}}`: call this function."""

    function: ChoiceFunction
    type: str | None = None


class JsonSchemaFormat(Struct, kw_only=True):
    """`response_format.json_schema`: the schema the answer must follow."""

    schema: JsonSchema | None = None
    name: str | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(Struct, kw_only=True):
    """`text`, `json_object` or `json_schema` (with `json_schema.schema`)."""

    type: str
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(Struct, kw_only=True):
    include_usage: bool | None = None


class Reasoning(Struct, kw_only=True):
    effort: Effort | None = None


class ChatBody(Struct, kw_only=True):
    """An OpenAI chat completions request."""

    model: ModelName
    messages: Messages
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: Literal[1] | None = None
    tools: list[ChatTool] | None = None
    tool_choice: (
        Annotated[Literal["auto", "none", "required"], Meta(description=TOOL_CHOICE_NOTE)]
        | NamedToolChoice
        | None
    ) = None
    response_format: ResponseFormat | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    max_output_tokens: TokenLimit | None = None
    timeoutMs: TimeoutMs | None = None  # noqa: N815
    reasoning_effort: Effort | None = None
    reasoning: Reasoning | None = None
    reasoning_mode: (
        Annotated[
            str,
            Meta(description="A named mode (see GET /v1/modes), any letter case."),
        ]
        | None
    ) = None
    functions: Annotated[Any, Meta(description="Legacy; refused when set: send `tools`.")] = None


# --- /v1/responses ----------------------------------------------------------------------------


class InputPart(Struct, kw_only=True):
    """A part of an input message's content: `input_text`, `output_text`, `text` (with
    `text`), `input_image` (with `image_url`) or `input_file` (a text file in `file_data`,
    inlined into the prompt under its `filename`; other files get a 400); other types are
    refused after decoding."""

    type: str
    text: str | None = None
    image_url: str | None = None
    filename: str | None = None
    file_data: str | None = None


class InputItem(Struct, kw_only=True):
    """One input item: a `message` (the default type), a `function_call` or a
    `function_call_output`; other types are refused after decoding."""

    type: str = "message"
    role: str | None = None
    content: str | list[InputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: Any = None


class TextFormat(Struct, kw_only=True):
    """`text`, `json_object` or `json_schema` (flat: `name`, `schema`, `strict`)."""

    type: str
    name: str | None = None
    description: str | None = None
    schema: JsonSchema | None = None
    strict: bool | None = None


class TextOptions(Struct, kw_only=True):
    format: (
        Annotated[
            TextFormat,
            Meta(
                description="Like chat's `response_format`: a `json_schema` becomes the turn's "
                "output schema (structured output), `json_object` asks for one JSON object."
            ),
        ]
        | None
    ) = None


# A tool type is a name (`web_search_preview_2025_03_11`); dropped ones are named in a header.
# `(?![\s\S])` ends the text in both Python's and JSON Schema's regexes (`$` lets "x\n" by).
ToolType = Annotated[str, Meta(pattern="^[A-Za-z0-9_.-]{1,64}(?![\\s\\S])")]


class ResponsesTool(Struct, kw_only=True):
    """A tool: `function` (flat: `name`, `description`, `parameters`), `custom` (`name`,
    `description`, `format`) or a hosted tool type (`web_search`, `local_shell`, ...) with its
    own members. Which types are served is decided after decoding (openai/tool_kinds.py)."""

    type: ToolType
    name: str | None = None
    description: str | None = None
    parameters: JsonSchema | None = None
    strict: bool | None = None
    format: dict[str, Any] | None = None


class ResponsesToolChoice(Struct, kw_only=True):
    """`{"type": "function", "name": ...}`: call this function (`type` defaults to
    `function`); other types name a hosted tool, decided on after decoding (responses.py)."""

    type: str | None = None
    name: str | None = None


class ResponsesBody(Struct, kw_only=True):
    """An OpenAI Responses API request."""

    model: ModelName
    input: str | list[InputItem]
    instructions: str | None = None
    stream: bool | None = None
    previous_response_id: (
        Annotated[
            str,
            Meta(
                description="Continue the conversation that response ended (on its thread "
                "while it is kept); unknown or expired: 400 `previous_response_not_found`."
            ),
        ]
        | None
    ) = None
    store: Annotated[bool, Meta(description="false: not kept for previous_response_id")] | None = (
        None
    )
    tools: list[ResponsesTool] | None = None
    tool_choice: (
        Annotated[Literal["auto", "none", "required"], Meta(description=TOOL_CHOICE_NOTE)]
        | ResponsesToolChoice
        | None
    ) = None
    reasoning: Reasoning | None = None
    timeoutMs: TimeoutMs | None = None  # noqa: N815
    max_output_tokens: TokenLimit | None = None
    text: TextOptions | None = None
