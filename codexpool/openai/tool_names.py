"""Client function names as the model sees them, and back.

Codex offers the model tools of its own (`exec_command`, `apply_patch`, ...) and drops a
dynamic tool that has the same name as one of them, so a client's `exec_command` would never
reach the model. Such a name travels under an alias, `client_exec_command`, and every call to
the alias comes back to the client under the name it chose.

The mapping is one-to-one: a name that already reads like an alias (`client_exec_command`,
`client_client_exec_command`, ...) gets one more prefix, so a client that offers both
`exec_command` and `client_exec_command` keeps them apart. Every other name is left alone.
"""

from __future__ import annotations

# Codex 0.169's own tool names (what `codex exec` offers by default, the shell variants and
# the experimental ones), checked against what reaches the backend: a client function of
# any of these names was missing from the model's tools.
CODEX_TOOL_NAMES = frozenset(
    {
        "apply_patch",
        "close_agent",
        "create_goal",
        "exec_command",
        "get_goal",
        "grep_files",
        "image_gen",
        "js_repl",
        "js_repl_reset",
        "list_dir",
        "list_mcp_resource_templates",
        "list_mcp_resources",
        "local_shell",
        "read_file",
        "read_mcp_resource",
        "request_user_input",
        "resume_agent",
        "send_input",
        "shell",
        "shell_command",
        "spawn_agent",
        "tool_search",
        "update_goal",
        "update_plan",
        "view_image",
        "wait",
        "web_search",
        "write_stdin",
    }
)
PREFIX = "client_"


def _needs_prefix(name: str) -> bool:
    """Tell whether `name` is a Codex tool name behind zero or more prefixes."""
    while name not in CODEX_TOOL_NAMES:
        if not name.startswith(PREFIX):
            return False
        name = name[len(PREFIX) :]
    return True


def alias(name: str) -> str:
    """Return the name the model sees for a client function named `name`."""
    return PREFIX + name if _needs_prefix(name) else name


def unalias(name: str) -> str:
    """Return the client's name for a function the model called as `name` (alias's inverse)."""
    if name.startswith(PREFIX) and _needs_prefix(name[len(PREFIX) :]):
        return name[len(PREFIX) :]
    return name
