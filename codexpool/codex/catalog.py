"""The model catalog chat turns run with: Codex's own, minus its agent harness.

Codex shapes what the model is offered from the model's catalog entry, and no feature switch of
codex 0.169.0 undoes these choices, so at start the engine asks the binary for its bundled
catalog (`codex debug models --bundled`), clears them in every entry and points the chat
app-servers at the copy (`model_catalog_json`):

- `apply_patch_tool_type`: offers the model Codex's file-editing tool;
- `tool_mode: "code_mode_only"` (every gpt-5.6 and gpt-6 entry): hides all tools, the client's
  functions included, behind a JavaScript `exec` tool described in ~14 KB of text;
- `multi_agent_version` ("v1"/"v2"): adds sub-agent tools and ~3 KB of "You are `/root`, the
  primary agent in a team of agents" instructions to every request;
- `experimental_supported_tools` (`clock`, `send_user_message_async`): tools of their own.

A chat model must see only the client's functions and instructions: with these cleared, a
one-line gpt-6.1-sol request shrinks from ~19 KB to ~1.8 KB and the client's functions are
plain function tools (codex-protocol-notes.md, "Instruction levers"). Everything else in the
catalog (models, base instructions, reasoning levels, the request format) stays exactly as
the binary ships it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .process import child_env

_LOGGER = logging.getLogger(__name__)
CATALOG_TIMEOUT_S = 10.0  # the real binary answers in about 0.1 s


# Catalog fields cleared in every entry, and the value that turns each one off.
CHAT_ENTRY: dict[str, None | list[str]] = {
    "apply_patch_tool_type": None,
    "tool_mode": None,
    "multi_agent_version": None,
    "experimental_supported_tools": [],
}


def chat_catalog(catalog: object) -> dict[str, Any]:
    """Return the catalog with every model's agent harness off (CHAT_ENTRY); ValueError if
    it is not a catalog."""
    if not isinstance(catalog, dict) or not isinstance(catalog.get("models"), list):
        raise ValueError("not a model catalog (no `models` list)")
    models = [m for m in catalog["models"] if isinstance(m, dict)]
    if not models:
        raise ValueError("the model catalog is empty")
    for model in models:
        model.update(CHAT_ENTRY)
    return {**catalog, "models": models}


async def write_chat_catalog(
    codex_bin: str, dest: Path, extra_env: Mapping[str, str] | None = None
) -> Path | None:
    """Write the chat catalog to `dest` and return it, or None (logged) when codex cannot
    produce one; chat then runs with the binary's own catalog, agent tools included."""
    try:
        with tempfile.TemporaryDirectory(prefix="codexpool-catalog-") as home:
            proc = await asyncio.create_subprocess_exec(
                codex_bin,
                "debug",
                "models",
                "--bundled",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=child_env(Path(home), extra_env),
                start_new_session=True,
            )
            try:
                async with asyncio.timeout(CATALOG_TIMEOUT_S):
                    out, _ = await proc.communicate()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                raise
        catalog = chat_catalog(json.loads(out))
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_text(json.dumps(catalog), encoding="utf-8")
        os.replace(tmp, dest)
    except (OSError, ValueError, TimeoutError) as exc:
        _LOGGER.warning(
            "Could not build the chat model catalog from `%s debug models --bundled` (%s); "
            "chat turns will also see Codex's apply_patch, code-mode and sub-agent tools",
            codex_bin,
            exc,
        )
        return None
    return dest
