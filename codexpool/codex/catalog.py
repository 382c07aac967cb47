"""The model catalog chat turns run with: Codex's own, minus its file-editing tool.

Codex offers the model an `apply_patch` tool whenever the model's catalog entry names an
`apply_patch_tool_type`, and no feature switch of codex 0.169.0 removes it. A chat gateway's
model must see only the client's tools, so at start the engine asks the binary for its bundled
catalog (`codex debug models --bundled`), clears that field in every entry and points the chat
app-servers at the copy (`model_catalog_json`). Everything else in the catalog (models,
instructions, reasoning levels) stays exactly as the binary ships it.
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

from .process import child_env

_LOGGER = logging.getLogger(__name__)
CATALOG_TIMEOUT_S = 10.0  # the real binary answers in about 0.1 s


def without_patch_tool(catalog: object) -> dict:
    """Return the catalog with no model offering apply_patch; ValueError if it is not one."""
    if not isinstance(catalog, dict) or not isinstance(catalog.get("models"), list):
        raise ValueError("not a model catalog (no `models` list)")
    models = [m for m in catalog["models"] if isinstance(m, dict)]
    if not models:
        raise ValueError("the model catalog is empty")
    for model in models:
        model["apply_patch_tool_type"] = None
    return {**catalog, "models": models}


async def write_chat_catalog(
    codex_bin: str, dest: Path, extra_env: Mapping[str, str] | None = None
) -> Path | None:
    """Write the chat catalog to `dest` and return it, or None (logged) when codex cannot
    produce one; chat then runs with the binary's own catalog, apply_patch included."""
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
        catalog = without_patch_tool(json.loads(out))
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_text(json.dumps(catalog), encoding="utf-8")
        os.replace(tmp, dest)
    except (OSError, ValueError, TimeoutError) as exc:
        _LOGGER.warning(
            "Could not build the chat model catalog from `%s debug models --bundled` (%s); "
            "chat turns will also see Codex's apply_patch tool",
            codex_bin,
            exc,
        )
        return None
    return dest
