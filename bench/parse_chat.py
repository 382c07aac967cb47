"""Parse time of a chat completions request body: from the raw bytes to a ChatRequest.

What every chat request pays before any work upstream: JSON parsing, the body checks every
route shares (depth, integer size, Unicode) and the chat body's validation and translation
into a Codex turn. Two bodies: a typical one (a system and a user message) and a large one
(198 messages of a tool-using conversation with two tools and an image). Prints microseconds
per parse (best of several rounds, so other load on the machine counts least).

    .venv/bin/python bench/parse_chat.py
    .venv/bin/python bench/parse_chat.py --against /tmp/before   # A/B against another tree

`--against DIR` takes a checkout of another commit (`git archive <commit> codexpool | tar -x
-C DIR`), loads its package as `codexpool_before` and times both in turns in this process,
which a shared machine's changing load disturbs far less than two separate runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codexpool.openai.models import ModelCatalog
from codexpool.openai.translate import parse_chat_request

try:  # the single body reader (codexpool/validate.py)
    from codexpool.validate import parse_json_object

    def parse(raw: bytes) -> Any:
        return parse_chat_request(parse_json_object(raw), CATALOG.resolve)

except ImportError:  # before validate.py: errors.read_json_object's steps, inline
    from codexpool import jsoncheck

    def parse(raw: bytes) -> Any:
        data = json.loads(raw, parse_int=jsoncheck.parse_int)
        assert jsoncheck.find_problem(data) is None
        return parse_chat_request(data, CATALOG.resolve)


CATALOG = ModelCatalog()

TYPICAL = {
    "model": "codex",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {"role": "user", "content": "Hi! What is the capital of France?"},
    ],
    "stream": True,
    "stream_options": {"include_usage": True},
    "temperature": 0.2,
}

_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} tool.",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}, "n": {"type": "integer"}},
                "required": ["q"],
            },
        },
    }
    for name in ("search", "fetch_page")
]


def _large() -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": "Be thorough. " * 40}]
    for i in range(49):
        messages.append({"role": "user", "content": f"Question {i}: " + "lorem ipsum " * 30})
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": "search", "arguments": json.dumps({"q": f"q{i}"})},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": "result " * 40})
        messages.append({"role": "assistant", "content": "An answer. " * 20})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    )
    return {"model": "codex", "messages": messages, "tools": _TOOLS, "tool_choice": "auto"}


def per_parse_us(fn: Callable[[bytes], Any], raw: bytes, rounds: int = 15) -> float:
    """Return the best round's microseconds per call."""
    number = max(20, int(5_000 / max(1, len(raw) // 100)))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn(raw)
        best = min(best, (time.perf_counter() - start) / number)
    return best * 1e6


def before_parser(tree: Path) -> Callable[[bytes], Any]:
    """The other tree's parse, read the way its own code read bodies (validate.py, or the
    steps of errors.read_json_object before it existed)."""
    home = Path(tempfile.mkdtemp(prefix="parse-before-"))
    shutil.copytree(tree / "codexpool", home / "codexpool_before")
    sys.path.insert(0, str(home))
    translate = importlib.import_module("codexpool_before.openai.translate")
    catalog = importlib.import_module("codexpool_before.openai.models").ModelCatalog()
    try:
        read = importlib.import_module("codexpool_before.validate").parse_json_object
    except ImportError:
        check = importlib.import_module("codexpool_before.jsoncheck")

        def read(raw: bytes) -> Any:
            data = json.loads(raw, parse_int=check.parse_int)
            assert check.find_problem(data) is None
            return data

    return lambda raw: translate.parse_chat_request(read(raw), catalog.resolve)


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--against", type=Path, help="a checkout of another commit to compare")
    args = cli.parse_args()
    before = before_parser(args.against) if args.against else None
    for name, body in (("typical", TYPICAL), ("large", _large())):
        raw = json.dumps(body).encode()
        head = f"{name:8} {len(raw):>7,} B  {len(body['messages']):>4} messages"
        if before is None:
            print(f"{head}  {per_parse_us(parse, raw):8.1f} µs per parse")
            continue
        old = new = float("inf")
        for _ in range(5):  # in turns, so both see the same load
            old = min(old, per_parse_us(before, raw, rounds=3))
            new = min(new, per_parse_us(parse, raw, rounds=3))
        print(f"{head}  before {old:8.1f} µs  now {new:8.1f} µs per parse")


if __name__ == "__main__":
    main()
