"""Settings: file + environment, validation with one clear line, and the documented example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codexpool.config import (
    SETTINGS_FIELDS,
    SettingsError,
    example_settings,
    load_settings,
)
from tests.conftest import write_settings


def test_file_values_and_defaults(tmp_path: Path) -> None:
    s = load_settings(write_settings(tmp_path, port=9123), env={})
    assert s.port == 9123
    assert s.openai_codex_timeout_ms == 300_000
    assert s.data_path == tmp_path.resolve()
    assert s.codex_homes == tmp_path.resolve() / "codex-homes"


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write_settings(tmp_path, port=9123)
    s = load_settings(
        path,
        env={"PORT": "9999", "HOST": "127.0.0.2", "OPENAI_API_KEY_PREFIX": "sk-env-"},
    )
    assert (s.port, s.host, s.openai_api_key_prefix) == (9999, "127.0.0.2", "sk-env-")


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"port": 0}, "'port'"),
        ({"port": "eighty"}, "'port'"),
        ({"adminPassword": ""}, "'adminPassword'"),
        ({"openaiKeyEncryptionSecret": "short"}, "'openaiKeyEncryptionSecret'"),
        ({"sessionSecret": "short"}, "'sessionSecret'"),
        ({"openaiMasterKeyPrefix": "sk-test-"}, "'openaiMasterKeyPrefix'"),
        ({"codexConfigOverrides": ["novalue"]}, "'codexConfigOverrides'"),
        ({"codexConfigOverrides": "a=b"}, None),
        ({"chatLeanFeatures": "maybe"}, "'chatLeanFeatures'"),
        ({"chatInstructions": "persona"}, "'chatInstructions'"),
        ({"bogusKey": 1}, "'bogusKey'"),
        ({"logLevel": "loud"}, "'logLevel'"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, override: dict, named: str | None) -> None:
    path = write_settings(tmp_path, **override)
    if named is None:
        load_settings(path, env={})
        return
    with pytest.raises(SettingsError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert named in message
    assert "\n" not in message


def test_invalid_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "settings.json"
    bad.write_text("{not json")
    with pytest.raises(SettingsError, match="not valid JSON"):
        load_settings(bad, env={})
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.json", env={})


def test_example_documents_every_key_and_loads(tmp_path: Path) -> None:
    doc = example_settings()
    for key, f in SETTINGS_FIELDS.items():
        assert key in doc
        assert doc[f"_{key}"], f"no help for {key}"
        assert f.metadata["help"]
    # The example plus the three required secrets is a valid settings file.
    doc.update(adminPassword="x" * 10, openaiKeyEncryptionSecret="e" * 32, sessionSecret="s" * 32)
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(doc))
    assert load_settings(path, env={}).port == 8080


def test_public_dict_masks_secrets(tmp_path: Path) -> None:
    s = load_settings(write_settings(tmp_path), env={})
    public = s.public_dict()
    assert public["openaiKeyEncryptionSecret"] == "***"
    assert public["sessionSecret"] == "***"
    assert public["adminPassword"] == "***"
    assert public["port"] == s.port
