"""Helpers shared by the end-to-end tests (and bench/load.py): link a portal user to a fake
ChatGPT account through the real CLI, and read the request log the server wrote.

They live here rather than in one test file so that the Python SDK tests, the Node SDK test and
the load benchmark link accounts the same way the README tells an operator to.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from codexpool.testing.fake_backend import make_auth_json

if TYPE_CHECKING:
    from tests.conftest import LiveServer


def link_user(server: LiveServer, tmp_path: Path, name: str, account_id: str) -> str:
    """Create a portal user, link it from an auth.json, and return its new key."""
    server.cli("user", "add", name)
    auth = tmp_path / f"{name}-auth.json"
    auth.write_text(json.dumps(make_auth_json(account_id, f"{name}@example.com")))
    server.cli("link", "import", name, "--auth-json", str(auth))
    return server.cli("key", "rotate", name).stdout.strip()


def usage_rows(server: LiveServer, columns: str = "status, error_code, stream") -> list[tuple]:
    """Return the server's request-log rows (oldest first) straight from its SQLite file."""
    con = sqlite3.connect(server.settings.db_path)
    try:
        return con.execute(f"SELECT {columns} FROM requests ORDER BY id").fetchall()
    finally:
        con.close()


def post_chat(url: str, key: str, body: dict, request_id: str) -> int:
    """POST a chat body with a bearer key and an x-request-id; read the whole answer (a stream
    too) and return its status, errors included."""
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "x-request-id": request_id,
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code
