"""Several real gateway nodes (`python -m codexpool serve`) on one database, for the cluster
tests and bench/cluster.py.

The nodes share a PostgreSQL database (`databaseUrl`) or one SQLite file: then every node but
the first gets symlinks to the first node's database and its change marker (SQLite follows the
link, so the WAL and its locks are shared; one machine only). Each node's codex marks its requests to
the fake backend with the node's id (a model-provider header), so a test can tell from the
fake's log which node served an account when.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codexpool.store import create_store
from codexpool.testing.fake_backend import NODE_HEADER, codex_overrides

if TYPE_CHECKING:
    from tests.conftest import LiveServer

CLUSTER_SECRET = "cluster-secret-for-tests-" + "x" * 16
METRICS_TOKEN = "m" * 32


def node_overrides(fake_url: str, node_id: str, lease_s: int) -> dict[str, Any]:
    """Return the settings of one test node."""
    header = f'model_providers.fakechat.http_headers={{ "{NODE_HEADER}" = "{node_id}" }}'
    return {
        "clusterSecret": CLUSTER_SECRET,
        "clusterLeaseSeconds": lease_s,
        "nodeId": node_id,
        "metricsToken": METRICS_TOKEN,
        "testingRefreshTokenUrl": f"{fake_url}/oauth/token",
        "codexConfigOverrides": [*codex_overrides(fake_url), header],
    }


def make_nodes(
    factory: Callable[..., LiveServer],
    fake_url: str,
    count: int,
    lease_s: int = 3,
    database_url: str | None = None,
    **settings: Any,
) -> tuple[list[LiveServer], str]:
    """Create `count` stopped nodes sharing one database: PostgreSQL at `database_url`, else
    the first node's SQLite file. It is created here with a master key; return the nodes and
    the master key. Extra keyword arguments are settings."""
    if database_url:
        settings["databaseUrl"] = database_url
    nodes = [
        factory(start=False, **node_overrides(fake_url, f"node-{chr(97 + i)}", lease_s), **settings)
        for i in range(count)
    ]
    first = nodes[0]
    master = first.cli("key", "rotate", "--master").stdout.strip()  # creates the database
    if database_url:
        return nodes, master
    marker = first.settings.db_path.with_name(first.settings.db_path.name + ".changed")
    marker.touch()
    for node in nodes[1:]:
        node.settings.data_path.mkdir(parents=True, exist_ok=True)
        os.symlink(first.settings.db_path, node.settings.db_path)
        os.symlink(marker, node.settings.db_path.with_name(marker.name))
    return nodes, master


def health(node: LiveServer) -> dict[str, Any]:
    """Return a node's operator health view (with its cluster picture)."""
    req = urllib.request.Request(
        node.url + "/api/health", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def owners(node: LiveServer) -> dict[int, str]:
    """Return account user id -> owning node id, as this node sees the cluster."""
    out = {}
    for n in health(node)["cluster"]["nodes"]:
        for acct in n["accounts"]:
            out[acct["userId"]] = n["id"]
    return out


def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError, KeyError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}: last {last!r}")


def balanced(nodes: list[LiveServer], accounts: int) -> Callable[[], dict[int, str] | None]:
    """Return a check that every account is owned, every live node holds its share and all
    nodes see the same picture."""

    def check() -> dict[int, str] | None:
        seen = owners(nodes[0])
        if len(seen) != accounts or any(owners(node) != seen for node in nodes[1:]):
            return None
        per_node: dict[str, int] = {}
        for node_id in seen.values():
            per_node[node_id] = per_node.get(node_id, 0) + 1
        fair = -(-accounts // len(nodes))
        if len(per_node) != len(nodes) or max(per_node.values()) > fair:
            return None
        return seen

    return check


def served_by(fake_log: list[dict[str, Any]]) -> dict[str, list[tuple[float, str]]]:
    """Return account id -> [(time, node id)] of its /responses calls, oldest first."""
    out: dict[str, list[tuple[float, str]]] = {}
    for entry in fake_log:
        if entry["path"].endswith("/responses") and entry["account_id"]:
            out.setdefault(entry["account_id"], []).append((entry["ts"], entry["node"]))
    return out


def runs(calls: list[tuple[float, str]]) -> list[str]:
    """Return the nodes that served an account, one entry per uninterrupted run."""
    out: list[str] = []
    for _, node in sorted(calls):
        if not out or out[-1] != node:
            out.append(node)
    return out


def db_path(node: LiveServer) -> Path:
    """Return the shared database file (the first node's)."""
    return node.settings.db_path.resolve()


def db_rows(node: LiveServer, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the nodes' database (SQLite or PostgreSQL) through the store, from any thread."""

    async def read() -> list[tuple]:
        store = create_store(node.settings)
        await store.open()
        try:
            return [tuple(r) for r in await store.fetchall(sql, params)]
        finally:
            await store.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result(timeout=60)
