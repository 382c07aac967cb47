"""The agentic execute endpoint's logic: validate the request, confine `cwd`, build the
`codex exec --json` command, and fold its JSONL events into the answer.

Running an agent in a folder of the server is dangerous by nature, so every check here errs on
the side of refusing: the endpoint is off unless enabled, `cwd` must exist and resolve (after
every symlink) inside a configured root, the sandbox comes from settings only, approvals are
never asked, and the run has a hard deadline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bodies import EXECUTE_CODES, ExecuteRun
from .config import Settings
from .errors import ApiError
from .validate import decode


@dataclass(frozen=True)
class ExecuteRequest:
    """A validated execute request; `cwd` is already the resolved, allowed real path."""

    prompt: str
    cwd: Path
    model: str | None
    timeout_s: float
    stream: bool


def resolve_cwd(raw: object, roots: tuple[str, ...]) -> Path:
    """Return the real path of `raw` if it is an existing folder inside one of `roots`.

    400 for a missing, relative, nonexistent or non-folder path; 403 when the real path (after
    `..` and symlinks) lies outside every root. The real path is what codex gets, so a symlink
    swapped after this check cannot redirect the run.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise ApiError(
            400, "`cwd` is required: an absolute folder path.", "invalid_cwd", param="cwd"
        )
    if "\x00" in raw:
        raise ApiError(400, "`cwd` contains a NUL byte.", "invalid_cwd", param="cwd")
    if not os.path.isabs(raw):
        raise ApiError(400, "`cwd` must be an absolute path.", "invalid_cwd", param="cwd")
    try:
        real = Path(raw).resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise ApiError(400, f"`cwd` {raw!r} does not exist.", "cwd_not_found", param="cwd") from exc
    if not real.is_dir():
        raise ApiError(400, f"`cwd` {raw!r} is not a folder.", "cwd_not_a_directory", param="cwd")
    for root in roots:
        try:
            real_root = Path(root).resolve(strict=True)
        except (OSError, RuntimeError):
            continue  # a configured root that does not exist allows nothing
        if real == real_root or real_root in real.parents:
            return real
    raise ApiError(
        403,
        f"`cwd` {raw!r} is outside the folders this server allows (executeAllowedRoots).",
        "cwd_not_allowed",
        param="cwd",
    )


def parse_execute_request(body: dict[str, Any] | ExecuteRun, settings: Settings) -> ExecuteRequest:
    """Validate an execute body against the settings; raise a 4xx ApiError naming the field."""
    if not isinstance(body, ExecuteRun):
        body = decode(body, ExecuteRun, codes=EXECUTE_CODES)
    cap_ms = settings.openai_codex_timeout_ms
    timeout_ms = cap_ms if body.timeoutMs is None else min(int(body.timeoutMs), cap_ms)
    model = body.model.strip() if body.model is not None else None
    cwd = resolve_cwd(body.cwd, settings.execute_allowed_roots)
    for own in (settings.data_path, settings.codex_homes):
        real = own.resolve()
        if cwd == real or real in cwd.parents:  # the run's sandbox shows its cwd as it is
            raise ApiError(
                403,
                f"`cwd` {cwd} is inside the gateway's own data folder.",
                "cwd_not_allowed",
                param="cwd",
            )
    return ExecuteRequest(
        prompt=body.prompt,
        cwd=cwd,
        model=model if model != "codex" else None,
        timeout_s=timeout_ms / 1000,
        stream=body.stream,
    )


def exec_argv(codex_bin: str, req: ExecuteRequest, settings: Settings) -> list[str]:
    """Return the argument list of one `codex exec --json` run (never a shell string)."""
    argv = [
        codex_bin,
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--ephemeral",
        "--sandbox",
        settings.execute_sandbox,
        "-c",
        'approval_policy="never"',  # exec has no -a flag; nothing may wait for a human
    ]
    for override in settings.codex_config_overrides:
        argv += ["-c", override]
    if req.model:
        argv += ["-m", req.model]
    argv += ["-C", str(req.cwd), "-"]  # `-`: the prompt comes on stdin, never in argv
    return argv


@dataclass
class ExecResult:
    """What a run produced so far, folded from `codex exec --json` events (raw JSON objects)."""

    thread_id: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    final_message: str | None = None
    usage: dict[str, Any] | None = None
    error: str | None = None
    failed: bool = False
    exit_code: int | None = None
    first_item_at: float | None = None

    def take(self, event: dict[str, Any], now: float) -> None:
        """Fold one event in; a top-level `error` is not terminal (codex retries after it)."""
        kind = event.get("type")
        if kind == "thread.started":
            self.thread_id = event.get("thread_id")
        elif kind == "item.completed" and isinstance(event.get("item"), dict):
            item = event["item"]
            self.items.append(item)
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                self.final_message = item["text"]
                if self.first_item_at is None:
                    self.first_item_at = now
        elif kind == "turn.completed":
            usage = event.get("usage")
            self.usage = usage if isinstance(usage, dict) else None
        elif kind == "turn.failed":
            self.failed = True
            err = event.get("error")
            self.error = err.get("message") if isinstance(err, dict) else str(err)
        elif kind == "error" and isinstance(event.get("message"), str):
            self.error = event["message"]  # kept in case the turn then fails
        elif kind == "exit":  # our own last event: the process's exit status
            self.exit_code = event.get("exit_code")
            if self.exit_code not in (0, None) and not self.error and event.get("stderr"):
                self.error = str(event["stderr"][-1])

    def body(self) -> dict[str, Any]:
        """Return the endpoint's JSON answer."""
        return {
            "finalMessage": self.final_message,
            "items": self.items,
            "usage": self.usage,
            "threadId": self.thread_id,
            "exitCode": self.exit_code,
        }

    def failure(self) -> ApiError | None:
        """Return the error to answer when the run failed, else None."""
        if not self.failed and self.exit_code in (0, None):
            return None
        message = self.error or f"codex exited with status {self.exit_code}"
        if "usage limit" in message.lower():
            return ApiError(429, message, "usage_limit_reached", source="upstream")
        if "not logged in" in message.lower() or "401" in message:
            return ApiError(502, message, "account_unauthorized", source="upstream")
        return ApiError(502, message, "codex_failed", source="upstream")

    def token_counts(self) -> tuple[int | None, int | None, int | None, int | None]:
        """Return (input, cached, output, reasoning) tokens for the usage row."""
        u = self.usage or {}

        def num(key: str) -> int | None:
            v = u.get(key)
            return v if isinstance(v, int) else None

        return (
            num("input_tokens"),
            num("cached_input_tokens"),
            num("output_tokens"),
            num("reasoning_output_tokens"),
        )
