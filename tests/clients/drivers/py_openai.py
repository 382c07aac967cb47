"""The official openai Python SDK against the gateway: chat completions and the Responses API."""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
from _driver import MODEL, WEATHER_PARAMS, get_weather, main
from pydantic import BaseModel


class Weather(BaseModel):
    city: str
    celsius: int


CHAT_TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": WEATHER_PARAMS,
        },
    }
]
RESPONSES_TOOLS: Any = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": WEATHER_PARAMS,
        "strict": True,
    }
]


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0)


def chat_plain(url: str, key: str) -> dict:
    r = client(url, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello"}]
    )
    return {
        "text": r.choices[0].message.content,
        "finish_reason": r.choices[0].finish_reason,
        "usage": r.usage.model_dump(),
    }


def chat_stream(url: str, key: str) -> dict:
    pieces, finish, usage = [], [], None
    for chunk in client(url, key).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count"}],
        stream=True,
        stream_options={"include_usage": True},
    ):
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish.append(choice.finish_reason)
        if chunk.usage:
            usage = chunk.usage.model_dump()
    return {"text": "".join(pieces), "pieces": pieces, "finish_reasons": finish, "usage": usage}


def chat_multi_turn(url: str, key: str) -> dict:
    c = client(url, key)
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada."},
    ]
    first = c.chat.completions.create(model=MODEL, messages=messages).choices[0].message.content
    messages += [
        {"role": "assistant", "content": first},
        {"role": "user", "content": "What is my name?"},
    ]
    second = c.chat.completions.create(model=MODEL, messages=messages).choices[0].message.content
    return {"texts": [first, second]}


def chat_tools(url: str, key: str) -> dict:
    c = client(url, key)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = c.chat.completions.create(model=MODEL, messages=messages, tools=CHAT_TOOLS)
    msg = first.choices[0].message
    messages.append(msg.model_dump(exclude_none=True))
    calls = []
    for call in msg.tool_calls or []:
        args = json.loads(call.function.arguments)
        calls.append({"name": call.function.name, "args": args})
        messages.append({"role": "tool", "tool_call_id": call.id, "content": get_weather(**args)})
    final = c.chat.completions.create(model=MODEL, messages=messages, tools=CHAT_TOOLS)
    return {
        "finish_reason": first.choices[0].finish_reason,
        "calls": calls,
        "text": final.choices[0].message.content,
    }


def chat_structured(url: str, key: str) -> dict:
    r = client(url, key).chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris as JSON"}],
        response_format=Weather,
    )
    return {"parsed": r.choices[0].message.parsed.model_dump()}


def responses_plain(url: str, key: str) -> dict:
    r = client(url, key).responses.create(model=MODEL, input="Say hello")
    return {
        "text": r.output_text,
        "status": r.status,
        "usage": r.usage.model_dump() if r.usage else None,
    }


def responses_stream(url: str, key: str) -> dict:
    events = []
    with client(url, key).responses.stream(model=MODEL, input="Count") as stream:
        for event in stream:
            events.append({"type": event.type, "cls": type(event).__name__})
        final = stream.get_final_response()
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    return {
        "events": events,
        "deltas": len(deltas),
        "text": final.output_text,
        "usage": final.usage.model_dump() if final.usage else None,
    }


def responses_multi_turn(url: str, key: str) -> dict:
    c = client(url, key)
    first = c.responses.create(model=MODEL, instructions="Be brief.", input="My name is Ada.")
    second = c.responses.create(
        model=MODEL, input="What is my name?", previous_response_id=first.id
    )
    return {"texts": [first.output_text, second.output_text], "ids": [first.id, second.id]}


def responses_tools(url: str, key: str) -> dict:
    c = client(url, key)
    first = c.responses.create(
        model=MODEL, input="Weather in Paris?", tools=RESPONSES_TOOLS, tool_choice="auto"
    )
    outputs, calls = [], []
    for item in first.output:
        if item.type == "function_call":
            args = json.loads(item.arguments)
            calls.append({"name": item.name, "args": args})
            outputs.append(
                {
                    "type": "function_call_output",
                    "call_id": item.call_id,
                    "output": get_weather(**args),
                }
            )
    final = c.responses.create(
        model=MODEL, previous_response_id=first.id, input=outputs, tools=RESPONSES_TOOLS
    )
    return {
        "calls": calls,
        "text": final.output_text,
        "echo": {
            "tools": [t.model_dump(exclude_none=True) for t in first.tools],
            "tool_choice": first.tool_choice,
        },
    }


def responses_stream_tools(url: str, key: str) -> dict:
    with client(url, key).responses.stream(
        model=MODEL, input="Weather in Paris?", tools=RESPONSES_TOOLS
    ) as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    calls = [
        {"name": i.name, "arguments": i.arguments}
        for i in final.output
        if i.type == "function_call"
    ]
    return {"events": types, "calls": calls}


def responses_structured(url: str, key: str) -> dict:
    r = client(url, key).responses.parse(
        model=MODEL, input="Weather in Paris as JSON", text_format=Weather
    )
    return {"parsed": r.output_parsed.model_dump()}


def responses_reasoning(url: str, key: str) -> dict:
    events = []
    with client(url, key).responses.stream(
        model=MODEL, input="Think, then answer", reasoning={"effort": "low", "summary": "auto"}
    ) as stream:
        for event in stream:
            events.append(event.model_dump(exclude={"response"}) | {"cls": type(event).__name__})
        final = stream.get_final_response()
    return {
        "events": events,
        "output": [i.model_dump() for i in final.output],
        "text": final.output_text,
    }


def responses_reasoning_tools(url: str, key: str) -> dict:
    events = []
    with client(url, key).responses.stream(
        model=MODEL, input="Weather in Paris?", tools=RESPONSES_TOOLS, reasoning={"summary": "auto"}
    ) as stream:
        for event in stream:
            events.append(event.model_dump(exclude={"response"}) | {"cls": type(event).__name__})
        final = stream.get_final_response()
    return {"events": events, "output": [i.model_dump() for i in final.output]}


def responses_reasoning_plain(url: str, key: str) -> dict:
    r = client(url, key).responses.create(
        model=MODEL, input="Think, then answer", reasoning={"effort": "low", "summary": "auto"}
    )
    return {"output": [i.model_dump() for i in r.output], "text": r.output_text}


def responses_input_file(url: str, key: str) -> dict:
    data = base64.b64encode(b"The launch code is 4242.\n").decode()
    r = client(url, key).responses.create(
        model=MODEL,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is the launch code in the file?"},
                    {
                        "type": "input_file",
                        "filename": "notes.txt",
                        "file_data": f"data:text/plain;base64,{data}",
                    },
                ],
            }
        ],
    )
    return {"text": r.output_text}


def responses_input_pdf(url: str, key: str) -> dict:
    data = base64.b64encode(b"%PDF-1.4 not really").decode()
    client(url, key).responses.create(
        model=MODEL,
        input=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_file",
                        "filename": "paper.pdf",
                        "file_data": f"data:application/pdf;base64,{data}",
                    },
                ],
            }
        ],
    )
    return {}


def responses_required_without_tools(url: str, key: str) -> dict:
    client(url, key).responses.create(model=MODEL, input="hi", tool_choice="required")
    return {}


main(
    {
        "chat.plain": chat_plain,
        "chat.stream": chat_stream,
        "chat.multi_turn": chat_multi_turn,
        "chat.tools": chat_tools,
        "chat.structured": chat_structured,
        "responses.plain": responses_plain,
        "responses.stream": responses_stream,
        "responses.multi_turn": responses_multi_turn,
        "responses.tools": responses_tools,
        "responses.stream_tools": responses_stream_tools,
        "responses.structured": responses_structured,
        "responses.reasoning": responses_reasoning,
        "responses.reasoning_tools": responses_reasoning_tools,
        "responses.reasoning_plain": responses_reasoning_plain,
        "responses.input_file": responses_input_file,
        "responses.input_pdf": responses_input_pdf,
        "responses.required_without_tools": responses_required_without_tools,
    }
)
