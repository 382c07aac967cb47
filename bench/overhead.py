"""Gateway overhead: time to first content and total time through codexpool versus driving a
warm codex app-server directly, at 1, 10 and 50 concurrent streams, plus a cold
`codex exec --json` per request for comparison.

Everything runs on loopback against the fake ChatGPT backend answering instantly, with the real
codex binary. Not a test: it prints a table.

    .venv/bin/python bench/overhead.py [--rounds 3] [--levels 1,10,50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
from benchlib import (
    FAKE_CODEX,
    RawSseClient,
    codex_version,
    direct_engine,
    measure,
    measure_steady,
    one_direct_turn,
    one_gateway_stream,
    pct,
    run_loop,
    start_gateway,
)

from codexpool.codex.process import child_env, override_args
from codexpool.config import find_codex_bin
from codexpool.testing.fake_backend import FakeBackend, codex_overrides


def cold_exec(
    codex_bin: str, home: Path, overrides: list[str], n: int
) -> list[tuple[float, float]]:
    """Time `codex exec --json` per request: (to the agent message, total)."""
    out = []
    argv = [
        codex_bin,
        *override_args(overrides),
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--sandbox",
        "read-only",
        "--ephemeral",
        "-",
    ]
    for _ in range(n):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=child_env(home),
            cwd=home,
        )
        assert proc.stdin and proc.stdout
        proc.stdin.write(b"hi")
        proc.stdin.close()
        first = None
        for line in proc.stdout:
            if first is None and b'"agent_message"' in line:
                first = time.perf_counter() - t0
        proc.wait()
        total = time.perf_counter() - t0
        out.append((first or total, total))
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="1,10,50")
    parser.add_argument("--exec-runs", type=int, default=5)
    parser.add_argument(
        "--fake-codex",
        action="store_true",
        help="use the instant fake app-server instead of the real binary (gateway overhead only)",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "aiohttp"),
        default="raw",
        help="HTTP client for the gateway path: a lean keep-alive client (default) that adds "
        "almost no CPU of its own, or aiohttp's",
    )
    parser.add_argument(
        "--steady",
        type=float,
        default=0.0,
        help="instead of waves, keep N streams open for this many seconds per level",
    )
    parser.add_argument(
        "--lockstep",
        action="store_true",
        help="with --steady: start every client at once (they then stay synchronized: a burst "
        "per round) instead of spreading their starts over one request's duration",
    )
    parser.add_argument(
        "--delta-ms",
        type=int,
        default=0,
        help="with --fake-codex: ms between the fake's text deltas (streams stay open longer)",
    )
    args = parser.parse_args()
    os.environ["FAKE_CODEX_DELAY_MS"] = str(args.delta_ms)  # read by the fake app-server

    async def run(run_one, level: int) -> tuple[list[float], list[float]]:
        if args.steady:
            stagger = 0.0
            if not args.lockstep:
                _, stagger = await run_one()  # spread the starts over one request's duration
            return await measure_steady(run_one, level, args.steady, stagger_s=stagger)
        return await measure(run_one, level, args.rounds)

    levels = [int(x) for x in args.levels.split(",")]
    codex_bin = FAKE_CODEX if args.fake_codex else find_codex_bin()
    if not codex_bin:
        raise SystemExit("codex binary not found (run scripts/install-codex.sh)")
    version = "fake app-server" if args.fake_codex else await codex_version(codex_bin)

    fake = FakeBackend().start()
    overrides = codex_overrides(fake.url)
    work = Path(tempfile.mkdtemp(prefix="codexpool-bench-"))
    top = max(levels)
    server, key = start_gateway(
        work, codex_bin, overrides, maxTurnsPerAccount=top, maxQueueWaitMs=60_000
    )
    rows: list[tuple[str, int, list[float], list[float]]] = []

    async def measure_path(name: str, run_one) -> None:
        """Warm up, then measure every level, adding one row per level."""
        await measure(run_one, 2, 2)
        for level in levels:
            ttfb, totals = await run(run_one, level)
            rows.append((name, level, ttfb, totals))

    try:
        url = server.api + "/chat/completions"
        if args.client == "raw":
            client = RawSseClient(url, key)
            await client.open(top)
            await measure_path("gateway", client.stream)
            await client.close()
        else:
            conn = aiohttp.TCPConnector(limit=top + 10)
            async with aiohttp.ClientSession(connector=conn) as session:
                await measure_path("gateway", lambda: one_gateway_stream(session, url, key))
    finally:
        server.stop()

    engine, home = direct_engine(work, codex_bin, overrides, top)
    async with engine:
        await measure_path("direct app-server", lambda: one_direct_turn(engine, home))

    cold = [] if args.fake_codex else cold_exec(codex_bin, home, overrides, args.exec_runs)
    fake.stop()

    print(
        f"\n{version}, "
        f"{os.cpu_count()} cores, {args.client} client, fake backend answering instantly, "
        + (
            f"{args.steady:.0f} s steady per level"
            f"{' in lockstep' if args.lockstep else ', staggered starts'}, "
            f"{args.delta_ms} ms between deltas"
            if args.steady
            else f"{args.rounds} waves/level"
        )
    )
    print(
        f"{'path':<20}{'conc':>5}{'n':>5}{'ttfb p50':>10}{'ttfb p99':>10}"
        f"{'total p50':>11}{'total p99':>11}   (ms)"
    )
    by_key = {}
    for name, level, ttfb, totals in rows:
        by_key[(name, level)] = ttfb
        print(
            f"{name:<20}{level:>5}{len(ttfb):>5}{pct(ttfb, 0.5):>10.1f}{pct(ttfb, 0.99):>10.1f}"
            f"{pct(totals, 0.5):>11.1f}{pct(totals, 0.99):>11.1f}"
        )
    print("\ngateway-added time to first content (gateway minus direct):")
    for level in levels:
        g, d = by_key[("gateway", level)], by_key[("direct app-server", level)]
        print(
            f"  {level:>3} streams: p50 {pct(g, 0.5) - pct(d, 0.5):+.1f} ms, "
            f"p99 {pct(g, 0.99) - pct(d, 0.99):+.1f} ms"
        )
    if not cold:
        return
    firsts = [c[0] for c in cold]
    totals = [c[1] for c in cold]
    print(
        f"\ncold `codex exec --json` per request (n={len(cold)}): agent message p50 "
        f"{statistics.median(firsts) * 1000:.0f} ms, total p50 {statistics.median(totals) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    run_loop(main())
