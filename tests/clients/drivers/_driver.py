"""What every Python driver of the client suite shares: argv, the weather tool, JSON output.

A driver runs in its client's own venv (tests/clients/.venvs/<name>), so it imports nothing of
codexpool or of the test suite: `python <driver>.py BASE_URL API_KEY SCENARIO` runs one scenario
and prints one JSON line, `{"ok": true, ...}` or `{"ok": false, "error": ...}`. Without a
SCENARIO it reads scenario names from stdin, one a line, and answers each with its JSON line:
the test suite keeps one driver per client running, so the client is imported once.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

MODEL = "gpt-5.5"
WEATHER_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "celsius": {"type": "integer"}},
    "required": ["city", "celsius"],
    "additionalProperties": False,
}


def get_weather(city: str) -> str:
    """The client-side function of every tool round trip."""
    return f"18C in {city}"


def run(scenarios: dict[str, Callable[[str, str], Any]], name: str, base_url: str, key: str) -> str:
    """Run one scenario and return its result as a JSON line."""
    try:
        result = scenarios[name](base_url, key)
        if inspect.isawaitable(result):
            result = asyncio.run(result)
        out = {"ok": True, **(result or {})}
    except Exception as exc:
        out = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "error_type": type(exc).__name__,
            "status": getattr(exc, "status_code", None),
            "body": getattr(exc, "body", None),
            "traceback": traceback.format_exc()[-3000:],
        }
    return json.dumps(out, default=str)


def main(scenarios: dict[str, Callable[[str, str], Any]]) -> None:
    """Run the scenario named on the command line, or each one named on stdin."""
    base_url, key = sys.argv[1:3]
    if len(sys.argv) > 3:
        print(run(scenarios, sys.argv[3], base_url, key), flush=True)
        return
    for line in sys.stdin:
        if line.strip():
            print(run(scenarios, line.strip(), base_url, key), flush=True)
