"""LangChain's ChatOpenAI against the gateway, on chat completions and with use_responses_api."""

from __future__ import annotations

from _driver import MODEL, main
from _driver import get_weather as weather
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel


class Weather(BaseModel):
    city: str
    celsius: int


@tool
def get_weather(city: str) -> str:
    """Weather of a city."""
    return weather(city)


def llm(api: str, url: str, key: str) -> ChatOpenAI:
    return ChatOpenAI(
        model=MODEL, base_url=url, api_key=key, max_retries=0, use_responses_api=api == "responses"
    )


def scenarios(api: str) -> dict:
    def plain(url: str, key: str) -> dict:
        return {"text": llm(api, url, key).invoke("Say hello").text}

    def stream(url: str, key: str) -> dict:
        pieces = [chunk.text for chunk in llm(api, url, key).stream("Count")]
        return {"text": "".join(pieces), "pieces": [p for p in pieces if p]}

    def multi_turn(url: str, key: str) -> dict:
        model = llm(api, url, key)
        messages = [SystemMessage("Be brief."), HumanMessage("My name is Ada.")]
        first = model.invoke(messages)
        second = model.invoke([*messages, AIMessage(first.text), HumanMessage("What is my name?")])
        return {"texts": [first.text, second.text]}

    def tools(url: str, key: str) -> dict:
        model = llm(api, url, key).bind_tools([get_weather])
        messages: list = [HumanMessage("Weather in Paris?")]
        ai = model.invoke(messages)
        messages.append(ai)
        for call in ai.tool_calls:
            messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
        final = model.invoke(messages)
        return {
            "calls": [{"name": c["name"], "args": c["args"]} for c in ai.tool_calls],
            "text": final.text,
        }

    def stream_tools(url: str, key: str) -> dict:
        gathered = None
        for chunk in llm(api, url, key).bind_tools([get_weather]).stream("Weather in Paris?"):
            gathered = chunk if gathered is None else gathered + chunk
        return {"calls": [{"name": c["name"], "args": c["args"]} for c in gathered.tool_calls]}

    def structured(url: str, key: str) -> dict:
        model = llm(api, url, key).with_structured_output(Weather, method="json_schema")
        return {"parsed": model.invoke("Weather in Paris as JSON").model_dump()}

    return {
        f"{api}.{f.__name__}": f
        for f in (plain, stream, multi_turn, tools, stream_tools, structured)
    }


main(scenarios("chat") | scenarios("responses"))
