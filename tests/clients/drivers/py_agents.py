"""The OpenAI Agents SDK against the gateway, with its Responses model and its chat model."""

from __future__ import annotations

from typing import Any

from _driver import MODEL, main
from _driver import get_weather as weather
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from openai.types.responses import ResponseTextDeltaEvent
from pydantic import BaseModel

set_tracing_disabled(True)  # traces would go to api.openai.com


class Weather(BaseModel):
    city: str
    celsius: int


@function_tool
def get_weather(city: str) -> str:
    """Weather of a city."""
    return weather(city)


def agent(api: str, url: str, key: str, **kw: Any) -> Agent:
    client = AsyncOpenAI(base_url=url, api_key=key, max_retries=0)
    if api == "chat":
        model: Any = OpenAIChatCompletionsModel(model=MODEL, openai_client=client)
    else:
        model = OpenAIResponsesModel(model=MODEL, openai_client=client)
    return Agent(name="assistant", instructions="Be brief.", model=model, **kw)


def scenarios(api: str) -> dict:
    async def plain(url: str, key: str) -> dict:
        result = await Runner.run(agent(api, url, key), "Say hello")
        return {"text": result.final_output}

    async def stream(url: str, key: str) -> dict:
        result = Runner.run_streamed(agent(api, url, key), "Count")
        pieces = []
        async for event in result.stream_events():
            if event.type == "raw_response_event" and isinstance(
                event.data, ResponseTextDeltaEvent
            ):
                pieces.append(event.data.delta)
        return {"text": result.final_output, "pieces": pieces}

    async def multi_turn(url: str, key: str) -> dict:
        a = agent(api, url, key)
        first = await Runner.run(a, "My name is Ada.")
        second = await Runner.run(
            a, [*first.to_input_list(), {"role": "user", "content": "What is my name?"}]
        )
        return {"texts": [first.final_output, second.final_output]}

    async def tools(url: str, key: str) -> dict:
        result = await Runner.run(agent(api, url, key, tools=[get_weather]), "Weather in Paris?")
        kinds = [item.type for item in result.new_items]
        return {"text": result.final_output, "items": kinds}

    async def structured(url: str, key: str) -> dict:
        result = await Runner.run(
            agent(api, url, key, output_type=Weather), "Weather in Paris as JSON"
        )
        return {"parsed": result.final_output.model_dump()}

    return {f"{api}.{f.__name__}": f for f in (plain, stream, multi_turn, tools, structured)}


main(scenarios("chat") | scenarios("responses"))
