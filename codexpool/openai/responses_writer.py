"""The Responses API's answer (`POST /v1/responses`): `response.*` events or one `response`.

The driver.AnswerWriter of the route; responses.py turns its request into a chat request.
Event order follows OpenAI's stream: `response.created`, the message item and its text part
announced before the first text delta, each output item closed in order (the message, then
function calls with their arguments), `response.completed`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ..codex.events import ToolCalls
from ..errors import ApiError, error_body
from . import sse
from .driver import TurnOutcome
from .tool_kinds import custom_input
from .tool_names import unalias
from .translate import ChatRequest

# Request fields a Responses object repeats, as OpenAI's does (clients read `tools` and
# `tool_choice` back from it); each defaults to what OpenAI reports when the request left it out.
ECHO_DEFAULTS: dict[str, Any] = {
    "instructions": None,
    "tools": [],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "text": {"format": {"type": "text"}},
    "reasoning": None,
    "max_output_tokens": None,
    "previous_response_id": None,
    "metadata": {},
}


def summary_parts(outcome: TurnOutcome) -> list[str]:
    """Return the turn's reasoning summary as its parts' texts (Codex's summaryIndex)."""
    parts: list[str] = []
    last: int | None = None
    for text, index in zip(outcome.reasoning, outcome.reasoning_parts, strict=True):
        if text:
            if index != last:
                parts.append("")
                last = index
            parts[-1] += text
    return parts


class ResponsesWriter:
    """Writes an answer as the Responses API: `response.*` events, or one `response` object
    (the driver.AnswerWriter of /v1/responses)."""

    def __init__(self, req: ChatRequest) -> None:
        self.response_id: str | None = "resp_" + uuid.uuid4().hex[:24]
        self.id = self.response_id
        self.msg_id = "msg_" + uuid.uuid4().hex[:24]
        # What the request said, repeated in the response (responses.echoed_fields).
        self.echo: dict[str, Any] = req.extras.get("response_echo") or dict(ECHO_DEFAULTS)
        self.model = req.raw_model
        self.plan = req.tool_plan  # custom tools' names, dropped hosted tools (tool_kinds.py)
        self.created_at = int(time.time())
        self.seq = 0
        self.started_text = False  # the message item and its text part were announced
        self.rs_id = "rs_" + uuid.uuid4().hex[:24]
        self.reasoning_open = False  # the reasoning item is announced and not closed yet
        # The streamed summary: its parts' texts, and Codex's summaryIndex of the last part.
        self.summary: list[str] = []
        self.part_index = 0
        # Reasoning that came after the answer's text began (not streamed, not in output).
        self.late_reasoning = False

    def event(self, kind: str, **fields: Any) -> bytes:
        """Encode one Responses stream event."""
        self.seq += 1
        return sse.encode({"type": kind, "sequence_number": self.seq, **fields}, event=kind)

    def message_item(self, text: str, status: str = "completed") -> dict[str, Any]:
        """Return the assistant message output item."""
        return {
            "type": "message",
            "id": self.msg_id,
            "status": status,
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }

    def reasoning_item(self, parts: list[str]) -> dict[str, Any]:
        """Return the reasoning output item with these summary parts (none while it streams)."""
        summary = [{"type": "summary_text", "text": text} for text in parts]
        return {"type": "reasoning", "id": self.rs_id, "summary": summary}

    @property
    def msg_index(self) -> int:
        """The message's output index: after the reasoning item when there is one."""
        return 1 if self.summary else 0

    def response(
        self, status: str, outcome: TurnOutcome | None, output: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Return the `response` object."""
        usage = None
        if outcome is not None and outcome.usage is not None:
            u = outcome.usage
            usage = {
                "input_tokens": u.input_tokens,
                "input_tokens_details": {"cached_tokens": u.cached_input_tokens},
                "output_tokens": u.output_tokens,
                "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
                "total_tokens": u.input_tokens + u.output_tokens,
            }
        body = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": output,
            **self.echo,
            "error": None,
            "incomplete_details": None,
            "usage": usage,
        }
        warnings = self.plan.warnings()
        if warnings:  # hosted tools the model was not offered (tool_kinds.py)
            body["warnings"] = warnings
        return body

    def output(self, outcome: TurnOutcome) -> list[dict[str, Any]]:
        """Return the output items: the reasoning summary, the text message, then a function
        call or a custom tool call for each tool the model called."""
        items: list[dict[str, Any]] = []
        # Streamed: the summary as streamed; whole: all of it.
        # Streamed: the summary as streamed; whole: all of it, part by part.
        summary = self.summary or ([] if self.late_reasoning else summary_parts(outcome))
        if summary:
            items.append(self.reasoning_item(summary))
        if outcome.text:
            items.append(self.message_item("".join(outcome.text)))
        if outcome.tool_calls is not None:
            for call in outcome.tool_calls.calls:
                name = unalias(call.name)  # the client's own name
                if name in self.plan.custom:  # offered as a function of one string
                    items.append(
                        {
                            "type": "custom_tool_call",
                            "id": "ctc_" + call.call_id,
                            "call_id": call.call_id,
                            "name": name,
                            "input": custom_input(call.arguments),
                            "status": "completed",
                        }
                    )
                    continue
                items.append(
                    {
                        "type": "function_call",
                        "id": "fc_" + call.call_id,
                        "call_id": call.call_id,
                        "name": name,
                        "arguments": call.arguments,
                        "status": "completed",
                    }
                )
        return items

    # --- driver.AnswerWriter ------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        """Return the header naming the hosted tools the model was not offered, if any."""
        return self.plan.headers()

    def open(self) -> bytes:
        """Return `response.created` with the response in progress."""
        return self.event("response.created", response=self.response("in_progress", None, []))

    def text(self, delta: str) -> bytes:
        """Return a text delta, announcing the message item and its text part first."""
        ref = {"item_id": self.msg_id, "output_index": self.msg_index, "content_index": 0}
        if self.started_text:
            return self.event("response.output_text.delta", **ref, delta=delta)
        self.started_text = True
        item = self.message_item("", "in_progress")
        item["content"] = []
        part = {"type": "output_text", "text": "", "annotations": []}
        return b"".join(
            [
                self._close_reasoning(),
                self.event(
                    "response.output_item.added", output_index=ref["output_index"], item=item
                ),
                self.event("response.content_part.added", **ref, part=part),
                self.event("response.output_text.delta", **ref, delta=delta),
            ]
        )

    def reasoning(self, delta: str, summary_index: int = 0) -> bytes:
        """Return a reasoning summary delta, announcing the reasoning item (output 0) and a
        summary part first, as OpenAI streams them; a new `summary_index` closes the part
        and opens the next. Codex reasons before it answers; a summary piece arriving once
        the answer's text began is left out of the stream."""
        if self.started_text:
            self.late_reasoning = True
            return b""
        out: list[bytes] = []
        if not self.reasoning_open:
            self.reasoning_open = True
            item = self.reasoning_item([])
            out.append(self.event("response.output_item.added", output_index=0, item=item))
        if not self.summary or summary_index != self.part_index:
            out.append(self._close_part())
            self.summary.append("")
            self.part_index = summary_index
            part = {"type": "summary_text", "text": ""}
            out.append(
                self.event("response.reasoning_summary_part.added", **self._ref(), part=part)
            )
        self.summary[-1] += delta
        out.append(self.event("response.reasoning_summary_text.delta", **self._ref(), delta=delta))
        return b"".join(out)

    def _ref(self) -> dict[str, Any]:
        """Return where the summary part being streamed is (numbered 0, 1, ... as streamed)."""
        return {"item_id": self.rs_id, "output_index": 0, "summary_index": len(self.summary) - 1}

    def _close_part(self) -> bytes:
        """Return the events that close the summary part being streamed, when there is one."""
        if not self.summary:
            return b""
        text = self.summary[-1]
        part = {"type": "summary_text", "text": text}
        return b"".join(
            [
                self.event("response.reasoning_summary_text.done", **self._ref(), text=text),
                self.event("response.reasoning_summary_part.done", **self._ref(), part=part),
            ]
        )

    def _close_reasoning(self) -> bytes:
        """Return the events that close the reasoning item, when one is open."""
        if not self.reasoning_open:
            return b""
        self.reasoning_open = False
        closed = self._close_part()
        item = self.reasoning_item(self.summary)
        return closed + self.event("response.output_item.done", output_index=0, item=item)

    def tool_calls(self, calls: ToolCalls) -> bytes:
        """Return nothing yet: function calls are output items after the message, so `finish`
        streams them (from the outcome) once the message is done."""
        return b""

    def error(self, err: ApiError) -> bytes:
        """Return the `error` event (OpenAI's ResponseErrorEvent) with its provenance."""
        fields = error_body(err.message, err.type, err.code, err.param, err.source)["error"]
        fields.pop("type")  # the event's own type is "error"
        return self.event("error", **fields)

    def finish(self, outcome: TurnOutcome) -> bytes:
        """Return each output item's closing events, then `response.completed`."""
        items = self.output(outcome)
        out: list[bytes] = [self._close_reasoning()]
        for index, item in enumerate(items):
            if item["type"] == "reasoning":
                continue  # closed before the message began, or just above
            if item["type"] == "function_call":
                out += _function_call_events(self, index, item)
                continue
            if item["type"] == "custom_tool_call":
                out += _custom_tool_call_events(self, index, item)
                continue
            if self.started_text:
                done = {"item_id": self.msg_id, "output_index": index, "content_index": 0}
                part = item["content"][0]
                out.append(self.event("response.output_text.done", **done, text=part["text"]))
                out.append(self.event("response.content_part.done", **done, part=part))
            out.append(self.event("response.output_item.done", output_index=index, item=item))
        out.append(
            self.event("response.completed", response=self.response("completed", outcome, items))
        )
        return b"".join(out)

    def body(self, outcome: TurnOutcome) -> dict[str, Any]:
        """Return the whole `response` object."""
        return self.response("completed", outcome, self.output(outcome))


def _function_call_events(b: ResponsesWriter, index: int, item: dict[str, Any]) -> list[bytes]:
    """Return a function call's events as OpenAI streams them: the item added (arguments
    empty), its arguments as one delta, the arguments done, the item done.

    Codex hands over a call only once its arguments are complete, so they go in one delta;
    clients that assemble calls from the deltas (LangChain) and the SDKs' stream helpers,
    which need the item added before its deltas, see the full sequence all the same.
    """
    ref = {"item_id": item["id"], "output_index": index}
    return [
        b.event(
            "response.output_item.added",
            output_index=index,
            item={**item, "arguments": "", "status": "in_progress"},
        ),
        b.event("response.function_call_arguments.delta", **ref, delta=item["arguments"]),
        b.event(
            "response.function_call_arguments.done",
            **ref,
            name=item["name"],
            arguments=item["arguments"],
        ),
        b.event("response.output_item.done", output_index=index, item=item),
    ]


def _custom_tool_call_events(b: ResponsesWriter, index: int, item: dict[str, Any]) -> list[bytes]:
    """Return a custom tool call's events as OpenAI streams them: the item added (input
    empty), its input as one delta (complete, as with function calls), the input done, the
    item done."""
    ref = {"item_id": item["id"], "output_index": index}
    return [
        b.event(
            "response.output_item.added",
            output_index=index,
            item={**item, "input": "", "status": "in_progress"},
        ),
        b.event("response.custom_tool_call_input.delta", **ref, delta=item["input"]),
        b.event("response.custom_tool_call_input.done", **ref, input=item["input"]),
        b.event("response.output_item.done", output_index=index, item=item),
    ]
