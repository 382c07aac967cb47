"""Cluster benchmark: master-key throughput and time to first byte with one, two and three
gateway nodes on one database, and the time a forwarded request adds to a local one.

Each configuration starts N real `python -m codexpool serve` nodes (cluster mode, sharing one
SQLite file as the cluster tests do) with the instant fake app-server
(`codexpool/testing/fake_codex.py`, so the gateways are what is measured), links --accounts
accounts, waits until the nodes share them, then keeps --clients streaming master-key chat
completions in flight for --seconds, spread round-robin over the nodes as a load balancer
would. It prints requests/s and TTFB p50/p99 per configuration.

The forwarding part runs a user key's requests one at a time, alternating between the node that
owns its account (local) and the other node (forwarded to the owner), and prints p50/p99 of
both and their difference (target: under 2 ms p50). All on one machine: with 2 CPU cores more
nodes share the same cores, so throughput cannot grow with nodes here. Not a test.

    .venv/bin/python bench/cluster.py [--nodes 1,2,3] [--accounts 6] [--clients 16]
                                      [--seconds 6] [--forwarded 300] [--postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchlib import FAKE_CODEX, cpu_seconds, machine, one_gateway_stream, pct  # noqa: E402

from codexpool.testing.pg_cluster import PgCluster  # noqa: E402
from tests.cluster_helpers import balanced, node_overrides, owners, wait_until  # noqa: E402
from tests.conftest import LiveServer, write_settings  # noqa: E402
from tests.e2e_helpers import link_user  # noqa: E402


def start_nodes(
    work: Path, count: int, accounts: int, database_url: str | None
) -> tuple[list[LiveServer], str, list[str]]:
    """Start `count` nodes on one database (PostgreSQL at `database_url`, else a shared SQLite
    file) with `accounts` linked users; return the nodes, the master key and the users' keys."""
    nodes = []
    for i in range(count):
        settings = node_overrides("http://127.0.0.1:9", f"node-{chr(97 + i)}", 15)
        settings |= {"codexBin": FAKE_CODEX, "codexConfigOverrides": [], "logLevel": "warning"}
        settings.pop("testingRefreshTokenUrl")
        if database_url:
            settings["databaseUrl"] = database_url
        nodes.append(LiveServer(write_settings(work / f"node{i}", **settings)))
    first = nodes[0]
    master = first.cli("key", "rotate", "--master").stdout.strip()
    marker = first.settings.db_path.with_name(first.settings.db_path.name + ".changed")
    marker.touch()
    for node in nodes[1:] if not database_url else []:
        node.settings.data_path.mkdir(parents=True, exist_ok=True)
        os.symlink(first.settings.db_path, node.settings.db_path)
        os.symlink(marker, node.settings.db_path.with_name(marker.name))
    keys = [link_user(first, work, f"user{i}", f"acct_{i}") for i in range(accounts)]
    for node in nodes:
        node.start()
    wait_until(balanced(nodes, accounts), what="the nodes sharing the accounts")
    return nodes, master, keys


async def warm(session: aiohttp.ClientSession, nodes: list[LiveServer], key: str, n: int) -> None:
    """Start every app-server (a few requests per account through every node)."""
    for i in range(n):
        node = nodes[i % len(nodes)]
        await one_gateway_stream(session, node.api + "/chat/completions", key)


async def load(nodes: list[LiveServer], key: str, clients: int, seconds: float) -> dict:
    """Keep `clients` master-key streams in flight over the nodes; return the figures."""
    ttfb: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    turn = iter(range(10**9))
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
    ) as session:
        await warm(session, nodes, key, 4 * len(nodes) * 3)
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                node = nodes[next(turn) % len(nodes)]
                try:
                    first, _ = await one_gateway_stream(
                        session, node.api + "/chat/completions", key
                    )
                    ttfb.append(first)
                except (AssertionError, aiohttp.ClientError, TimeoutError) as exc:
                    errors[str(exc)[:120] or type(exc).__name__] += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        took = time.perf_counter() - started
    return {
        "rps": len(ttfb) / took,
        "p50": pct(ttfb, 0.5),
        "p99": pct(ttfb, 0.99),
        "requests": len(ttfb),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
    }


async def forwarding(nodes: list[LiveServer], keys: list[str], count: int) -> dict:
    """Alternate one user key's requests between its owner and the other node."""
    owner_id = owners(nodes[0])[1]  # user0 has id 1 (the master key owns no user row)
    local = next(n for n in nodes if n.settings.node_id == owner_id)
    remote = next(n for n in nodes if n is not local)
    times: dict[str, list[float]] = {"local": [], "forwarded": []}
    ttfb: dict[str, list[float]] = {"local": [], "forwarded": []}
    assert remote.proc is not None
    async with aiohttp.ClientSession() as session:
        for node in (local, remote, local, remote):
            await one_gateway_stream(session, node.api + "/chat/completions", keys[0])
        cpu_before = cpu_seconds(remote.proc.pid)
        for i in range(count):
            for name, node in (("local", local), ("forwarded", remote))[:: 1 if i % 2 else -1]:
                first, total = await one_gateway_stream(
                    session, node.api + "/chat/completions", keys[0]
                )
                times[name].append(total * 1000)
                ttfb[name].append(first * 1000)
        # The forwarding node does nothing else meanwhile (a tick every 3 s): its CPU is the
        # cost of forwarding, which a busy machine's scheduling delays do not inflate.
        forwarder_cpu = cpu_seconds(remote.proc.pid) - cpu_before
    out: dict = {"forwarder_cpu_ms": forwarder_cpu / count * 1000}
    for name in times:
        out[name] = (
            statistics.median(times[name]),
            sorted(times[name])[len(times[name]) * 99 // 100],
        )
        out[name + "_ttfb"] = statistics.median(ttfb[name])
    out["added_p50"] = out["forwarded"][0] - out["local"][0]
    out["added_ttfb_p50"] = out["forwarded_ttfb"] - out["local_ttfb"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--accounts", type=int, default=6)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--forwarded", type=int, default=300)
    parser.add_argument(
        "--postgres", action="store_true", help="share a private PostgreSQL cluster's database"
    )
    args = parser.parse_args()
    pg = None
    if args.postgres:
        pg = PgCluster()
        pg.init()
        pg.start()
    try:
        run(args, pg)
    finally:
        if pg is not None:
            pg.destroy()


def run(args: argparse.Namespace, pg: PgCluster | None) -> None:
    """Run every configuration and print the figures."""
    print(f"machine: {machine()}")
    print(
        f"master-key streams, {args.accounts} accounts, {args.clients} clients, "
        f"{args.seconds:.0f} s, instant fake app-server, nodes share "
        + ("one PostgreSQL database" if pg else "one SQLite file")
    )
    print(
        f"{'nodes':>5} {'req/s':>8} {'TTFB p50':>9} {'TTFB p99':>9} {'requests':>9} {'errors':>7}"
    )
    forward_figures = None
    for count in [int(n) for n in args.nodes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="codexpool-cluster-bench-") as tmp:
            url = pg.create_database() if pg is not None else None
            nodes, master, keys = start_nodes(Path(tmp), count, args.accounts, url)
            try:
                r = asyncio.run(load(nodes, master, args.clients, args.seconds))
                print(
                    f"{count:>5} {r['rps']:>8.0f} {r['p50']:>7.1f}ms {r['p99']:>7.1f}ms "
                    f"{r['requests']:>9} {r['errors']:>7}"
                )
                for kind, n in r["error_kinds"].items():
                    print(f"      {n} x {kind}")
                if count == 2 and args.forwarded:
                    forward_figures = asyncio.run(forwarding(nodes, keys, args.forwarded))
            finally:
                for node in nodes:
                    node.stop()
    if forward_figures is not None:
        f = forward_figures
        print(f"\nuser-key streams one at a time, {args.forwarded} each way, alternating:")
        print(f"  local      total p50 {f['local'][0]:.2f} ms  TTFB p50 {f['local_ttfb']:.2f} ms")
        print(
            f"  forwarded  total p50 {f['forwarded'][0]:.2f} ms  "
            f"TTFB p50 {f['forwarded_ttfb']:.2f} ms"
        )
        print(
            f"  added by forwarding: {f['added_p50']:.2f} ms p50 (total), "
            f"{f['added_ttfb_p50']:.2f} ms p50 (TTFB); target < 2 ms"
        )
        print(f"  forwarding node's CPU per forwarded request: {f['forwarder_cpu_ms']:.2f} ms")
        print(f"  load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
