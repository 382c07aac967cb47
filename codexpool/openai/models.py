"""The model catalogue: what `/v1/models` lists and which names a chat request may use.

Codex's `model/list` (through a warm app-server) is the source when an account is linked; a
fallback list keeps the API usable before any account exists.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..errors import ApiError

_LOGGER = logging.getLogger(__name__)

# The catalogue bundled in codex 0.169.0 (what `model/list` answers before any backend call).
FALLBACK_MODELS = (
    "gpt-6.1-sol",
    "gpt-6-astra",
    "gpt-6-sol",
    "gpt-6-luna",
    "gpt-6.1-terra",
    "gpt-5.6-sol",
    "gpt-5.6-terra",
    "gpt-5.6-luna",
    "gpt-5.5",
)
DEFAULT_ALIAS = "codex"  # "use whatever the account's Codex default is"
REFRESH_SECONDS = 600.0


class ModelCatalog:
    """Caches the model ids Codex offers; answers lookups for request validation."""

    def __init__(self) -> None:
        self._ids: tuple[str, ...] = FALLBACK_MODELS
        self._details: dict[str, dict[str, Any]] = {}
        self._fetched_at = 0.0
        self.from_codex = False

    @property
    def stale(self) -> bool:
        """Tell whether a refresh from Codex is due."""
        return time.monotonic() - self._fetched_at > REFRESH_SECONDS

    def update(self, models: list[dict[str, Any]]) -> None:
        """Take the result of Codex `model/list` (ids under `id` or `model`)."""
        ids: list[str] = []
        details: dict[str, dict[str, Any]] = {}
        for m in models:
            if m.get("hidden"):
                continue
            mid = m.get("id") or m.get("model") or m.get("slug")
            if isinstance(mid, str) and mid and mid not in details:
                ids.append(mid)
                details[mid] = m
        self._fetched_at = time.monotonic()
        if ids:
            self._ids, self._details, self.from_codex = tuple(ids), details, True

    def ids(self) -> tuple[str, ...]:
        """Return the model ids clients may request."""
        return self._ids

    def resolve(self, name: str) -> str:
        """Map a requested model to the one Codex runs ("" = Codex default), or raise 404."""
        if name == DEFAULT_ALIAS:
            return ""
        if name in self._ids:
            return name
        raise ApiError(
            404,
            f"The model {name!r} does not exist or is not offered here. Available: "
            + ", ".join((DEFAULT_ALIAS, *self._ids)),
            "model_not_found",
            param="model",
        )

    def as_openai_list(self) -> dict[str, Any]:
        """Return the catalogue in OpenAI's list shape."""
        created = int(time.time())
        data = [
            {"id": mid, "object": "model", "created": created, "owned_by": "openai-codex"}
            for mid in (DEFAULT_ALIAS, *self._ids)
        ]
        return {"object": "list", "data": data}
