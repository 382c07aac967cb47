"""The instruction policy alone: what `thread/start` gets in each mode, which errors count as
the backend refusing instructions, and the per-account fallback memory."""

from __future__ import annotations

import pytest

from codexpool.codex.events import TurnError, error_from_turn
from codexpool.codex.instructions import (
    CLIENT_THREAD_CONFIG,
    InstructionsPolicy,
    refuses_instructions,
)

REFUSAL = error_from_turn(
    {"message": '{"detail": "Instructions are not valid"}', "codexErrorInfo": "other"}
)


def test_client_mode_makes_the_client_text_the_base_instructions() -> None:
    policy = InstructionsPolicy("client")
    assert policy.thread_params("1", "Be brief.") == {
        "baseInstructions": "Be brief.",
        "config": CLIENT_THREAD_CONFIG,
    }
    # No client text: an empty base, which sends no instruction message at all.
    assert policy.thread_params("1", None)["baseInstructions"] == ""
    gateway = InstructionsPolicy("client", "Never reveal secrets.")
    assert gateway.thread_params("1", "Be brief.")["baseInstructions"] == (
        "Never reveal secrets.\n\nBe brief."
    )
    assert gateway.thread_params("1", None)["baseInstructions"] == "Never reveal secrets."


def test_codex_mode_keeps_the_persona_unless_the_gateway_replaces_it() -> None:
    assert InstructionsPolicy("codex").thread_params("1", "Be brief.") == {
        "developerInstructions": "Be brief."
    }
    assert InstructionsPolicy("codex").thread_params("1", None) == {}
    assert InstructionsPolicy("codex", "Be kind.").thread_params("1", "Be brief.") == {
        "baseInstructions": "Be kind.",
        "developerInstructions": "Be brief.",
    }


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="instructions mode"):
        InstructionsPolicy("persona")


@pytest.mark.parametrize(
    ("err", "refused"),
    [
        (REFUSAL, True),
        (TurnError("upstream", '{"detail":"Instructions are required"}'), True),
        (TurnError("bad_request", "Invalid 'instructions': too long", http_status=400), True),
        (TurnError("upstream", "Instructions are not valid", http_status=500), False),
        (TurnError("usage_limit", "instructions ... usage limit"), False),
        (TurnError("unauthorized", "instructions", http_status=401), False),
        (TurnError("upstream", '{"error": {"message": "fake status 400"}}'), False),
    ],
)
def test_refusals_are_told_by_their_message(err: TurnError, refused: bool) -> None:
    assert refuses_instructions(err) is refused


def test_fallback_is_per_account_and_remembered() -> None:
    policy = InstructionsPolicy("client")
    assert not policy.uses_codex_own("1")
    assert not policy.fall_back("1", TurnError("upstream", "fake status 400"))
    assert policy.fallbacks() == {}
    assert policy.fall_back("1", REFUSAL)
    assert policy.fall_back("1", REFUSAL)  # a turn started before the first refusal
    assert list(policy.fallbacks()) == ["1"]
    assert policy.uses_codex_own("1") and not policy.uses_codex_own("2")
    # The fallen-back account gets Codex's persona and the client's text as developer text.
    assert policy.thread_params("1", "Be brief.") == {"developerInstructions": "Be brief."}
    assert policy.thread_params("2", "Be brief.")["baseInstructions"] == "Be brief."
    # Unlinked or deleted: the next account on that id starts with the client's again.
    policy.forget("1")
    assert policy.fallbacks() == {} and not policy.uses_codex_own("1")


def test_codex_mode_without_gateway_instructions_has_nothing_to_fall_back_to() -> None:
    policy = InstructionsPolicy("codex")
    assert policy.uses_codex_own("1")
    assert not policy.fall_back("1", REFUSAL)
    assert policy.fallbacks() == {}
