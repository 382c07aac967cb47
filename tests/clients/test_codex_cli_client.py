"""The Codex CLI 0.171 as a client of the gateway (issue 17 item 3's acceptance).

The CLI (installed pinned by scripts/install-codex-client.sh into tests/clients/.codex-client)
is configured as the README says: the gateway as its model provider (`wire_api =
"responses"`, a gateway API key from the environment), in a private CODEX_HOME. `codex exec`
then runs with its default tool set (functions, the freeform `apply_patch`, `tool_search`,
`web_search`) against the real gateway, the real codex 0.169 behind it and the fake ChatGPT
backend, scripted so that the model edits a file with `apply_patch` (a custom tool call),
reads it back with `exec_command` (a function call), then answers. The CLI runs both tools on
its own machine and sends the results back; each step resumes the parked turn.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from codexpool.testing.fake_backend import codex_overrides

from ..e2e_helpers import link_user

pytestmark = pytest.mark.e2e

CLIENT_ROOT = Path(__file__).parent / ".codex-client"
VERSION = "0.171.0"
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hi from the gateway\n*** End Patch\n"


def codex_client() -> Path:
    """Return the pinned client binary, or skip saying how to get it."""
    found = sorted(CLIENT_ROOT.glob("node_modules/@openai/*/vendor/*/bin/codex"))
    if not found:
        pytest.skip(
            f"Codex CLI {VERSION} (the client) is not installed: run "
            "scripts/install-codex-client.sh (it needs npm and the registry; offline it skips)"
        )
    return found[0]


def client_config(api_url: str) -> str:
    """Return the client's config.toml: the README's snippet, pointed at this gateway."""
    return (
        'model = "gpt-5.5"\n'
        'model_provider = "codexpool"\n'
        "\n"
        "[model_providers.codexpool]\n"
        'name = "codexpool"\n'
        f'base_url = "{api_url}"\n'
        'env_key = "CODEXPOOL_API_KEY"\n'
        'wire_api = "responses"\n'
    )


def _rollout_items(codex_home: Path) -> list[dict[str, Any]]:
    """Return the response items the client recorded in its session file."""
    items = []
    for path in codex_home.glob("sessions/**/rollout-*.jsonl"):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("type") == "response_item":
                items.append(entry["payload"])
    return items


def test_codex_exec_completes_a_tool_round_trip_through_the_gateway(
    live_server_factory: Any, fake_backend: Any, tmp_path: Path
) -> None:
    binary = codex_client()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    assert version.stdout.split()[-1] == VERSION, version.stdout

    server = live_server_factory(
        start=False, codexConfigOverrides=codex_overrides(fake_backend.url)
    )
    key = link_user(server, tmp_path, "alice", "acct_alice")
    fake_backend.set_usage("acct_alice", primary_used=10, secondary_used=5)
    server.start()
    fake_backend.script(
        "acct_alice",
        {
            "kind": "function_call",
            "name": "client_apply_patch",  # the CLI's apply_patch, aliased (tool_names.py)
            "arguments": json.dumps({"input": PATCH}),
            "call_id": "call_patch",
        },
        {
            "kind": "function_call",
            "name": "client_exec_command",
            "arguments": json.dumps({"cmd": "cat hello.txt"}),
            "call_id": "call_cat",
        },
        fake_backend.reply("The file says hi.", chunks=3),
    )
    before = len(fake_backend.requests("/codex/responses"))

    home = tmp_path / "client-home"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(client_config(server.api))
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "CODEXPOOL_API_KEY": key,
        "RUST_LOG": "error",
    }

    def codex_exec(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                binary,
                "exec",
                *args[:-1],
                "--json",
                "--skip-git-repo-check",
                # The CLI's own sandbox cannot start under pytest's /tmp homes (it refuses its
                # helper binaries there); the commands are the test's own.
                "--dangerously-bypass-approvals-and-sandbox",
                args[-1],
            ],
            env=env,
            cwd=work,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )

    run = codex_exec("Create hello.txt saying hi, then show it.")
    detail = f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr[-4000:]}"
    assert run.returncode == 0, detail

    # The client ran both tools on its side: the file exists, and the model got its contents.
    assert (work / "hello.txt").read_text() == "hi from the gateway\n", detail
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    answers = [
        e["item"]["text"]
        for e in events
        if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"
    ]
    assert answers == ["The file says hi."], detail

    # apply_patch went to the client as a custom_tool_call (its freeform tool), exec_command
    # as a function call, each under the client's own name, and the results came back.
    items = _rollout_items(codex_home)
    custom = [i for i in items if i.get("type") == "custom_tool_call"]
    assert [(i["name"], i["call_id"], i["input"]) for i in custom] == [
        ("apply_patch", "call_patch", PATCH)
    ]
    calls = [i for i in items if i.get("type") == "function_call"]
    assert [(i["name"], i["call_id"]) for i in calls] == [("exec_command", "call_cat")]
    assert {i["call_id"] for i in items if i.get("type") == "custom_tool_call_output"} == {
        "call_patch"
    }

    upstream = [r["body"] for r in fake_backend.requests("/codex/responses")[before:]]
    assert len(upstream) == 3  # one model step each: patch, cat, answer (parked, resumed)
    names = {t.get("name") for t in upstream[0]["tools"]}
    assert {"client_exec_command", "client_apply_patch"} <= names
    assert not {t["type"] for t in upstream[0]["tools"]} & {"web_search", "tool_search"}
    outputs = {
        i["call_id"]: i["output"]
        for i in upstream[-1]["input"]
        if i["type"] == "function_call_output"
    }
    assert "hello.txt" in json.dumps(outputs["call_patch"])
    assert "hi from the gateway" in json.dumps(outputs["call_cat"])

    # A later prompt in the same session is a fresh turn: the CLI's whole history, custom
    # tool call included, reaches the model as items of a new thread.
    fake_backend.script("acct_alice", fake_backend.reply("Still hi.", chunks=2))
    again = codex_exec("resume", "--last", "Does it still say hi?")
    assert again.returncode == 0, f"{again.stdout}\n{again.stderr[-4000:]}"
    assert '"text":"Still hi."' in again.stdout
    history = json.dumps(fake_backend.requests("/codex/responses")[-1]["body"]["input"])
    assert "client_apply_patch" in history and "Does it still say hi?" in history
    assert "hi from the gateway" in history
