"""Helpers of the client compatibility suite (tests/clients): find a pinned client, run one
driver scenario against the real server, read what reached the fake backend."""

from __future__ import annotations

import json
import select
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer

CLIENTS_DIR = Path(__file__).resolve().parent
VENVS = CLIENTS_DIR / ".venvs"
DRIVERS = CLIENTS_DIR / "drivers"
NODE_MODULES = CLIENTS_DIR / "node_modules"
MODEL = "gpt-5.5"
INSTALL_HINT = "run scripts/install-clients.sh"


def pinned_python(name: str, package: str) -> tuple[str, str]:
    """Return the client venv's python and the version of `package` its lock pins, or skip
    when the venv is missing (install failed or never ran)."""
    lock = (CLIENTS_DIR / "requirements" / f"{name}.txt").read_text().splitlines()
    version = next(
        line.split("==", 1)[1] for line in lock if line.lower().startswith(f"{package}==")
    )
    python = VENVS / name / "bin" / "python"
    if not python.exists():
        pytest.skip(f"client {package} {version} is not installed: {INSTALL_HINT}")
    return str(python), version


def pinned_node(package: str) -> tuple[str, str]:
    """Return node and the version of `package` the committed lock pins, or skip."""
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed (Debian/Ubuntu: apt-get install nodejs)")
    lock = json.loads((CLIENTS_DIR / "package-lock.json").read_text())
    version = str(lock["packages"][f"node_modules/{package}"]["version"])
    installed = NODE_MODULES / package / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != version:
        pytest.skip(f"node client {package} {version} is not installed: {INSTALL_HINT}")
    return node, version


class ClientRig:
    """A running server with one linked account, the fake backend and one long-lived driver
    process of a client (imported once, fed one scenario name a line on stdin)."""

    def __init__(
        self, client_server: tuple[LiveServer, str, str], backend: Any, command: list[str]
    ) -> None:
        self.server, self.key, self.account = client_server
        self.backend = backend
        server = self.server
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [*command, server.api, self.key],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=CLIENTS_DIR,
        )

    def __enter__(self) -> ClientRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the driver (its stdin closes) and wait for it."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.stderr.close()

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-4000:]

    def run(self, scenario: str, *steps: dict[str, Any], timeout: float = 90) -> dict[str, Any]:
        """Script the backend's answers, run one driver scenario and return what it printed.

        A scenario that raised inside the client comes back as `{"ok": false, "error": ...}`
        for the test to assert on; a driver that died or went silent fails here with its
        stderr and the server's log.
        """
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.backend.clear_script(self.account)
        self.backend.script(self.account, *steps)
        self.proc.stdin.write(scenario + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        assert line.startswith("{"), (
            f"driver gave no JSON for {scenario} (exit {self.proc.poll()}): {line!r}\n"
            f"{self._stderr_tail()}\nserver log:\n{self.server.log()[-3000:]}"
        )
        result: dict[str, Any] = json.loads(line)
        return result

    def backend_bodies(self, since: int = 0) -> list[dict[str, Any]]:
        """Return the bodies of this account's /responses requests that reached the backend."""
        return [
            r["body"]
            for r in self.backend.requests("/codex/responses")
            if r["account_id"] == self.account
        ][since:]


def ok(result: dict[str, Any]) -> dict[str, Any]:
    """Return a driver's result, failing with the client's own error when it raised."""
    assert result.get("ok"), f"client raised: {result.get('error')}\n{result.get('traceback')}"
    return result


# What the backend answers in the scenarios every client runs, and what the client must see.
HELLO = "Hello there"
COUNT = "one two three four"
STRUCTURED = '{"city": "Paris", "celsius": 18}'
PARSED = {"city": "Paris", "celsius": 18}
FINAL = "It is 18C in Paris."


def weather_call(name: str = "get_weather", arguments: str = '{"city": "Paris"}') -> dict[str, Any]:
    """A backend step: the model calls a client function."""
    return {"kind": "function_call", "name": name, "arguments": arguments, "call_id": "call_w1"}


def check_plain(rig: ClientRig, api: str) -> None:
    r = ok(rig.run(f"{api}.plain", rig.backend.reply(HELLO)))
    assert r["text"] == HELLO


def check_stream(rig: ClientRig, api: str) -> None:
    # A pause between the backend's deltas, so that what arrives apart leaves apart.
    r = ok(rig.run(f"{api}.stream", rig.backend.reply(COUNT, chunks=4, delay_between_ms=30)))
    assert r["text"] == COUNT and len(r["pieces"]) >= 2, r  # really streamed, not one blob


def check_multi_turn(rig: ClientRig, api: str) -> None:
    r = ok(rig.run(f"{api}.multi_turn", rig.backend.reply("Hi Ada."), rig.backend.reply("Ada.")))
    assert r["texts"] == ["Hi Ada.", "Ada."]
    last = json.dumps(rig.backend_bodies()[-1]["input"])
    assert "My name is Ada." in last and "What is my name?" in last


def check_tools(rig: ClientRig, api: str) -> dict[str, Any]:
    """The model calls get_weather, the client runs it and sends the result, the model answers."""
    r = ok(rig.run(f"{api}.tools", weather_call(), rig.backend.reply(FINAL)))
    assert r["text"] == FINAL
    assert "18C in Paris" in json.dumps(rig.backend_bodies()[-1]["input"])  # the client's result
    return r


def check_structured(rig: ClientRig, api: str, scenario: str = "structured") -> None:
    """Native structured output: the schema reaches the backend as the turn's text.format."""
    mark = len(rig.backend_bodies())
    r = ok(rig.run(f"{api}.{scenario}", rig.backend.reply(STRUCTURED)))
    assert r["parsed"] == PARSED
    fmt = rig.backend_bodies(mark)[0]["text"]["format"]
    assert fmt["type"] == "json_schema" and "celsius" in json.dumps(fmt["schema"])
