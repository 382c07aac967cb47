"""The request bodies of the admin, portal, quick-test and execute routes, declared once.

As for the OpenAI routes (openai/bodies.py), each type is both the validation
(`validate.decode`) and the OpenAPI schema. Unknown fields are ignored, except in the
key-limits body, where a typo would silently lift a limit. Rules a type cannot state stay in
plain code after decoding: username case folding (users.normalize_username), label
printability, allowed model ids being distinct, `cwd` confinement (execute.resolve_cwd).
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from .key_limits import KeyLimitsChange as KeyLimitsChange  # declared with its rules
from .openai.bodies import TimeoutMs
from .users import MAX_LABEL_LEN, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN
from .validate import NON_BLANK

MAX_EXECUTE_PROMPT_CHARS = 200_000
MAX_QUICK_PROMPT_CHARS = 32_000
DEFAULT_QUICK_TIMEOUT_MS = 120_000


class Credentials(Struct, kw_only=True):
    """A sign-in."""

    username: Annotated[str, Meta(pattern=NON_BLANK, max_length=256)]
    password: Annotated[str, Meta(min_length=1, max_length=1024)]


class Registration(Struct, kw_only=True):
    """A new portal user (the name is case-folded)."""

    username: Annotated[str, Meta(pattern="^\\s*[A-Za-z0-9_.-]{3,32}\\s*$")]
    password: Annotated[str, Meta(min_length=MIN_PASSWORD_LEN, max_length=MAX_PASSWORD_LEN)]


REGISTRATION_CODES = {"username": "invalid_username", "password": "invalid_password"}


class UserRef(Struct, kw_only=True):
    """The user a management action is about."""

    username: Annotated[str, Meta(pattern=NON_BLANK)]


USER_REF_CODES = {"username": "invalid_username"}


class KeyLabel(Struct, kw_only=True):
    """An optional label for the new key (printable text)."""

    label: Annotated[str, Meta(max_length=MAX_LABEL_LEN)] | None = None


class PoolOptIn(Struct, kw_only=True):
    """Whether the user's account may serve master-key (pool) requests."""

    optIn: bool  # noqa: N815


class QuickTest(Struct, kw_only=True):
    """The portal's quick test: one short chat turn."""

    prompt: Annotated[str, Meta(pattern=NON_BLANK, max_length=MAX_QUICK_PROMPT_CHARS)]
    stream: bool = False
    model: str | None = None
    timeoutMs: TimeoutMs = DEFAULT_QUICK_TIMEOUT_MS  # type: ignore[assignment]  # noqa: N815


class ExecuteRun(Struct, kw_only=True):
    """One agentic `codex exec` run."""

    prompt: Annotated[str, Meta(pattern=NON_BLANK, max_length=MAX_EXECUTE_PROMPT_CHARS)]
    cwd: Annotated[
        str,
        Meta(
            pattern="^/[^\\u0000]*$",
            description="An absolute folder path inside executeAllowedRoots.",
        ),
    ]
    model: Annotated[str, Meta(pattern="^(?!-)\\s*\\S")] | None = None
    timeoutMs: (  # noqa: N815
        Annotated[
            TimeoutMs,
            Meta(description="Capped by the openaiCodexTimeoutMs setting."),
        ]
        | None
    ) = None
    stream: bool = False


EXECUTE_CODES = {
    "prompt": "invalid_prompt",
    "cwd": "invalid_cwd",
    "model": "invalid_model",
    "timeoutMs": "invalid_timeout",
    "stream": "invalid_stream",
}
