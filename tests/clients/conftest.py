"""The client compatibility suite's rig: real clients, each in its own pinned environment, against
the real server (real codex behind it, the fake ChatGPT backend in front of codex).

A client test scripts the fake backend's answers, runs one scenario of a small driver script
with the client's own interpreter (tests/clients/.venvs/<name>/bin/python or node with
tests/clients/node_modules), and asserts on the JSON the driver prints and on what reached the
backend. Clients live outside our .venv, installed by scripts/install-clients.sh, so their
dependencies can clash neither with ours nor with each other's; a client that is not installed
skips with a message saying how to install it.

One server per test module keeps the suite quick; every module links its own fake account, so
scripted answers never leak between modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, write_settings
from tests.e2e_helpers import link_user

from .rig import CLIENTS_DIR


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder `clients` (and `e2e`): `scripts/test.sh clients` runs
    the suite alone."""
    for item in items:
        if CLIENTS_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.clients)
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="module")
def client_server(
    tmp_path_factory: pytest.TempPathFactory,
    fake_backend: Any,
    codex_bin: str,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[LiveServer, str, str]]:
    """One real server per module with a fresh fake account linked; yields (server, key,
    account id)."""
    from codexpool.testing.fake_backend import codex_overrides

    module = request.module.__name__.rsplit(".", 1)[-1]
    account = f"acct_{module}"
    tmp = tmp_path_factory.mktemp(module)
    server = LiveServer(
        write_settings(tmp / "server", codexConfigOverrides=codex_overrides(fake_backend.url))
    )
    key = link_user(server, tmp, "clientuser", account)
    fake_backend.set_usage(account, primary_used=10, secondary_used=5)
    server.start()
    try:
        yield server, key, account
    finally:
        assert server.stop() == 0, server.log()[-3000:]
