"""The official openai Node SDK against the real server: tests/node/stream_chat.mjs streams,
answers, lists models and meets a bad key through codexpool -> real codex -> the fake backend.

Node applications are a large share of OpenAI clients, and the Node SDK parses SSE and errors
with its own code, so the Python SDK passing says nothing about it. The SDK version is pinned in
tests/node/package-lock.json and installed by scripts/install-node-client.sh (called by .ci/run).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.e2e_helpers import usage_rows

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "stream_chat.mjs"


def pinned_sdk_version() -> str:
    """Return the openai version the committed lock file pins."""
    lock = json.loads((NODE_DIR / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/openai"]["version"])


@pytest.fixture(scope="session")
def node_bin() -> str:
    """Return node with the pinned SDK installed, or skip saying what is missing."""
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed (Debian/Ubuntu: apt-get install nodejs)")
    installed = NODE_DIR / "node_modules" / "openai" / "package.json"
    if not installed.exists():
        pytest.skip("the openai Node SDK is not installed: run scripts/install-node-client.sh")
    version = json.loads(installed.read_text())["version"]
    if version != pinned_sdk_version():
        pytest.skip(
            f"installed openai Node SDK {version} is not the pinned {pinned_sdk_version()}: "
            "run scripts/install-node-client.sh"
        )
    return node


def run_node(node: str, server: LiveServer, key: str) -> tuple[int, dict[str, Any], str]:
    """Run the Node script against the server; return its exit code, JSON summary and stderr."""
    proc = subprocess.run(
        [node, str(SCRIPT), server.api, key],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=NODE_DIR,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output (exit {proc.returncode}):\n{proc.stderr}\n{server.log()[-3000:]}"
    return proc.returncode, json.loads(lines[-1]), proc.stderr


def test_node_sdk_stream_non_stream_models_and_bad_key(
    node_bin: str, linked: tuple[LiveServer, str], fake_backend: Any
) -> None:
    server, key = linked
    streamed_text = "Node streams one two three four five"
    fake_backend.script(
        "acct_alice",
        fake_backend.reply(streamed_text, chunks=5),
        fake_backend.reply("Plain answer for Node"),
    )
    code, summary, stderr = run_node(node_bin, server, key)
    assert code == 0 and summary["ok"], (summary, stderr)
    assert summary["sdkVersion"] == pinned_sdk_version()

    stream = summary["stream"]
    assert stream["text"] == streamed_text
    assert len(stream["pieces"]) >= 2  # really streamed, not one blob
    assert stream["finishReason"] == "stop"
    # The fake backend reports 11 input tokens (3 cached) and one output token per word.
    words = len(streamed_text.split())
    assert stream["usage"]["prompt_tokens"] == 11
    assert stream["usage"]["completion_tokens"] == words
    assert stream["usage"]["total_tokens"] == 11 + words
    assert stream["usage"]["prompt_tokens_details"]["cached_tokens"] == 3

    done = summary["nonStream"]
    assert done["text"] == "Plain answer for Node"
    assert done["role"] == "assistant" and done["finishReason"] == "stop"
    assert done["usage"]["prompt_tokens"] == 11
    assert done["usage"]["completion_tokens"] == len("Plain answer for Node".split())

    assert "codex" in summary["models"] and "gpt-5.5" in summary["models"]

    bad = summary["badKey"]
    assert bad["isAuthenticationError"] and bad["status"] == 401
    assert bad["code"] == "invalid_api_key" and bad["type"]
    assert bad["body"]["message"] and "param" in bad["body"]
    assert bad["errorSource"] == "gateway"

    # Both turns reached the fake backend, the system message as developer instructions.
    bodies = [r["body"] for r in fake_backend.requests("/codex/responses")[-2:]]
    assert "Be brief." in json.dumps(bodies[0])
    # The gateway logged exactly what the Node client did: one stream, one plain, one 401.
    assert server.stop() == 0  # graceful stop drains the usage writer
    rows = usage_rows(server, "status, error_code, stream, input_tokens, output_tokens")
    assert (200, None, 1, 11, words) in rows
    assert (200, None, 0, 11, 4) in rows
    assert sum(1 for r in rows if r[0] == 200) == 2


def test_node_sdk_multi_turn_tool_loop_stays_on_one_thread(
    node_bin: str, linked: tuple[LiveServer, str], fake_backend: Any
) -> None:
    server, key = linked
    fake_backend.script(
        "acct_alice",
        {
            "kind": "function_call",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
            "call_id": "call_node1",
        },
        fake_backend.reply("18C and sunny."),
        fake_backend.reply("Rain tomorrow."),
    )
    mark = len(fake_backend.requests("/codex/responses"))
    proc = subprocess.run(
        [node_bin, str(NODE_DIR / "tool_loop.mjs"), server.api, key],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=NODE_DIR,
    )
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and summary["ok"], (summary, proc.stderr)
    assert [(t["finishReason"], t["text"]) for t in summary["turns"]] == [
        ("tool_calls", None),
        ("stop", "18C and sunny."),
        ("stop", "Rain tomorrow."),
    ]
    assert summary["turns"][0]["calls"] == ["get_weather"]
    bodies = [r["body"] for r in fake_backend.requests("/codex/responses")[mark:]]
    assert len(bodies) == 3 and len({b["prompt_cache_key"] for b in bodies}) == 1
    last = json.dumps(bodies[-1]["input"])
    assert last.index("Weather in Paris?") < last.index("18C in Paris") < last.index("tomorrow?")
    assert summary["turns"][2]["usage"]["prompt_tokens"] == 11  # its own turn, not the thread
