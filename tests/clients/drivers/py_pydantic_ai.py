"""pydantic-ai against the gateway, with its chat model and its Responses model."""

from __future__ import annotations

from typing import Any

from _driver import MODEL, main
from _driver import get_weather as weather
from pydantic import BaseModel
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider


class Weather(BaseModel):
    city: str
    celsius: int


def agent(api: str, url: str, key: str, **kw: Any) -> Agent:
    provider = OpenAIProvider(base_url=url, api_key=key)
    model_cls: Any = OpenAIChatModel if api == "chat" else OpenAIResponsesModel
    return Agent(model_cls(MODEL, provider=provider), instructions="Be brief.", **kw)


def scenarios(api: str) -> dict:
    async def plain(url: str, key: str) -> dict:
        return {"text": (await agent(api, url, key).run("Say hello")).output}

    async def stream(url: str, key: str) -> dict:
        pieces = []
        async with agent(api, url, key).run_stream("Count") as result:
            async for piece in result.stream_text(delta=True, debounce_by=None):
                pieces.append(piece)
        return {"text": "".join(pieces), "pieces": pieces}

    async def multi_turn(url: str, key: str) -> dict:
        a = agent(api, url, key)
        first = await a.run("My name is Ada.")
        second = await a.run("What is my name?", message_history=first.all_messages())
        return {"texts": [first.output, second.output]}

    async def tools(url: str, key: str) -> dict:
        a = agent(api, url, key)

        @a.tool_plain
        def get_weather(city: str) -> str:
            """Weather of a city."""
            return weather(city)

        result = await a.run("Weather in Paris?")
        kinds = [part.part_kind for m in result.all_messages() for part in m.parts]
        return {"text": result.output, "parts": kinds}

    async def structured(url: str, key: str) -> dict:
        result = await agent(api, url, key, output_type=NativeOutput(Weather)).run(
            "Weather in Paris as JSON"
        )
        return {"parsed": result.output.model_dump()}

    async def structured_tool(url: str, key: str) -> dict:
        result = await agent(api, url, key, output_type=Weather).run("Weather in Paris as JSON")
        return {"parsed": result.output.model_dump()}

    return {
        f"{api}.{f.__name__}": f
        for f in (plain, stream, multi_turn, tools, structured, structured_tool)
    }


main(scenarios("chat") | scenarios("responses"))
