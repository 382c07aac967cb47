"""instructor against the gateway: structured output through tool calls, JSON schema, partial
streaming and the Responses API."""

from __future__ import annotations

import instructor
from _driver import MODEL, main
from openai import OpenAI
from pydantic import BaseModel


class Weather(BaseModel):
    city: str
    celsius: int


def client(url: str, key: str, mode: instructor.Mode) -> instructor.Instructor:
    return instructor.from_openai(OpenAI(base_url=url, api_key=key, max_retries=0), mode=mode)


ASK = [{"role": "user", "content": "Weather in Paris?"}]


def chat_plain(url: str, key: str) -> dict:
    r = client(url, key, instructor.Mode.TOOLS).chat.completions.create(
        model=MODEL, response_model=None, messages=[{"role": "user", "content": "Say hello"}]
    )
    return {"text": r.choices[0].message.content}


def chat_tools(url: str, key: str) -> dict:
    w = client(url, key, instructor.Mode.TOOLS).chat.completions.create(
        model=MODEL, response_model=Weather, messages=ASK, max_retries=0
    )
    return {"parsed": w.model_dump()}


def chat_multi_turn(url: str, key: str) -> dict:
    messages = [
        *ASK,
        {"role": "assistant", "content": "Paris is mild today."},
        {"role": "user", "content": "And as data?"},
    ]
    w = client(url, key, instructor.Mode.TOOLS).chat.completions.create(
        model=MODEL, response_model=Weather, messages=messages, max_retries=0
    )
    return {"parsed": w.model_dump()}


def chat_structured(url: str, key: str) -> dict:
    w = client(url, key, instructor.Mode.JSON_SCHEMA).chat.completions.create(
        model=MODEL, response_model=Weather, messages=ASK, max_retries=0
    )
    return {"parsed": w.model_dump()}


def chat_stream(url: str, key: str) -> dict:
    partials = [
        p.model_dump()
        for p in client(url, key, instructor.Mode.TOOLS).chat.completions.create_partial(
            model=MODEL, response_model=Weather, messages=ASK, max_retries=0
        )
    ]
    return {"partials": partials, "parsed": partials[-1]}


def responses_tools(url: str, key: str) -> dict:
    w = client(url, key, instructor.Mode.RESPONSES_TOOLS).responses.create(
        model=MODEL, response_model=Weather, input="Weather in Paris?", max_retries=0
    )
    return {"parsed": w.model_dump()}


main(
    {
        "chat.plain": chat_plain,
        "chat.tools": chat_tools,
        "chat.multi_turn": chat_multi_turn,
        "chat.structured": chat_structured,
        "chat.stream": chat_stream,
        "responses.tools": responses_tools,
    }
)
