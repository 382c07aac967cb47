"""tool_names: the alias a client function gets when it is named like a Codex tool."""

from __future__ import annotations

import pytest

from codexpool.openai.tool_names import CODEX_TOOL_NAMES, alias, unalias


@pytest.mark.parametrize(
    ("name", "seen"),
    [
        ("exec_command", "client_exec_command"),
        ("apply_patch", "client_apply_patch"),
        ("client_exec_command", "client_client_exec_command"),
        ("get_weather", "get_weather"),
        ("client_lookup", "client_lookup"),
        ("client_", "client_"),
        ("exec_command_x", "exec_command_x"),
    ],
)
def test_alias_and_back(name: str, seen: str) -> None:
    assert alias(name) == seen
    assert unalias(seen) == name


def test_aliases_never_collide() -> None:
    """A client may offer a Codex name and its alias at once: the model tells them apart."""
    names = [*CODEX_TOOL_NAMES, "get_weather", "client_lookup"]
    names += ["client_" + n for n in names] + ["client_client_" + n for n in CODEX_TOOL_NAMES]
    seen = [alias(n) for n in names]
    assert len(set(seen)) == len(names)
    assert not set(seen) & CODEX_TOOL_NAMES
    assert [unalias(s) for s in seen] == names
