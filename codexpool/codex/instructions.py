"""Which instructions a chat turn carries upstream, and the fallback to Codex's own.

Codex wraps every turn in its own agent setup: a 21.7 KB persona ("You are Codex..."), a catalog
of bundled skills, a sandbox-permissions note and an `<environment_context>` block, ~27 KB that
cost the account owner's quota on every request and make the model answer as a coding agent.
In the `client` mode (the default) a chat thread gets the client's system/developer messages as
its base instructions and nothing else (codex-protocol-notes.md, "Instruction levers"):

- `thread/start` `baseInstructions` replaces the persona (`""` sends no developer message);
- the thread's `config` turns off the skills block (`skills.include_instructions`), the
  permissions and environment blocks and the apps / collaboration-mode notes.

The `codex` mode is Codex's full setup, with the client's messages as developer instructions.

A backend may refuse instructions that are not Codex's own (the ChatGPT backend once answered
400 `{"detail":"Instructions are not valid"}`). Such a refusal is recognised here; the gateway
then runs the request again in the `codex` mode with Codex's own persona and keeps that account
on it until restart (`fall_back`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .events import TurnError

_LOGGER = logging.getLogger(__name__)

CLIENT = "client"
CODEX = "codex"
MODES = (CLIENT, CODEX)

# Per-thread codex config of a `client` turn: each key removes one block codex adds to the
# model's input (all checked against codex 0.169.0 with a logging backend).
CLIENT_THREAD_CONFIG: dict[str, Any] = {
    "skills.include_instructions": False,  # <skills_instructions>: bundled + user skills
    "include_permissions_instructions": False,  # <permissions instructions>: sandbox note
    "include_environment_context": False,  # <environment_context>: cwd, shell, date, roots
    "include_apps_instructions": False,  # apps/connectors note (features.apps)
    "include_collaboration_mode_instructions": False,
}


def refuses_instructions(err: TurnError) -> bool:
    """Tell whether a turn failed because the backend refused its instructions.

    Codex 0.169 reports a 4xx `/responses` answer as an `error` notification whose message is
    the backend's body (`codexErrorInfo: "other"`, no status), e.g.
    `{"detail": "Instructions are not valid"}`; a usage-limit or login failure never counts.
    """
    if err.kind not in ("upstream", "bad_request"):
        return False
    if err.http_status is not None and not 400 <= err.http_status < 500:
        return False
    return "instructions" in err.message.lower()


class InstructionsPolicy:
    """Builds the instruction part of `thread/start` and remembers fallen-back accounts."""

    def __init__(self, mode: str = CLIENT, base: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"instructions mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.base = base or None  # chatBaseInstructions
        self._fallbacks: dict[str, float] = {}  # account key -> when (unix time)

    @property
    def customizes(self) -> bool:
        """Tell whether turns may carry instructions other than Codex's own persona."""
        return self.mode == CLIENT or self.base is not None

    def uses_codex_own(self, account_key: str) -> bool:
        """Tell whether the account's turns carry Codex's own persona (mode or fallback)."""
        return not self.customizes or account_key in self._fallbacks

    def thread_params(self, account_key: str, client: str | None) -> dict[str, Any]:
        """Return the `thread/start` members for a turn whose client sent `client` (the joined
        leading system/developer messages, None when there were none)."""
        if account_key in self._fallbacks:
            return {"developerInstructions": client} if client else {}
        if self.mode == CLIENT:
            base = "\n\n".join(text for text in (self.base, client) if text)
            return {"baseInstructions": base, "config": dict(CLIENT_THREAD_CONFIG)}
        params: dict[str, Any] = {}
        if self.base:
            params["baseInstructions"] = self.base
        if client:
            params["developerInstructions"] = client
        return params

    def fall_back(self, account_key: str, err: TurnError) -> bool:
        """If `err` is the backend refusing a turn's instructions, put the account on Codex's
        own until restart (one warning) and return True: the caller runs the turn again, once,
        unless that turn already carried Codex's own (`uses_codex_own` before it started)."""
        if not self.customizes or not refuses_instructions(err):
            return False
        if account_key not in self._fallbacks:
            self._fallbacks[account_key] = time.time()
            _LOGGER.warning(
                "The backend refused the gateway's instructions on account %s (%s); its chat "
                "turns use Codex's own instructions until restart",
                account_key,
                err.message[:200],
            )
        return True

    def forget(self, account_key: str) -> None:
        """Drop an account's fallback (unlinked or deleted: its next login, or a new user
        given the same id, is another ChatGPT account)."""
        self._fallbacks.pop(account_key, None)

    def fallbacks(self) -> dict[str, float]:
        """Return the accounts on Codex's own instructions and since when (unix time)."""
        return dict(self._fallbacks)
