"""What the bubblewrap sandbox of model commands (codexpool/codex/isolation.py) costs in start
time: a `codex app-server` start (spawn to the `initialize` answer, plus its first thread) and a
whole `codex exec --json` run against the fake backend, each with and without the sandbox.

    .venv/bin/python bench/sandbox.py --runs 5

Runs are interleaved (plain, sandboxed, plain, ...) so that machine noise falls on both alike.
The Codex home lies outside the temporary folder, as in production, so codex's own sandbox
works in both variants.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from codexpool.codex.appserver import AppServer  # noqa: E402
from codexpool.codex.isolation import INSIDE_WORK, Isolation, gateway_isolation  # noqa: E402
from codexpool.config import find_codex_bin  # noqa: E402
from codexpool.execrun import Executions  # noqa: E402
from codexpool.testing.fake_backend import FakeBackend, codex_overrides, make_auth_json  # noqa: E402


async def appserver_start(
    codex: str, home: Path, work: Path, overrides: list[str], sandbox: Isolation | None
) -> tuple[float, float]:
    """Return (seconds to the initialize answer, seconds to the first thread/start answer)."""
    server = AppServer(codex, home, overrides, cwd=work, isolation=sandbox)
    t0 = time.perf_counter()
    await server.start()
    ready = time.perf_counter() - t0
    cwd = INSIDE_WORK if sandbox else work
    await server.request(
        "thread/start",
        {"cwd": str(cwd), "approvalPolicy": "never", "sandbox": "read-only", "ephemeral": True},
    )
    thread = time.perf_counter() - t0
    await server.close()
    return ready, thread


async def exec_run(
    codex: str, home: Path, work: Path, overrides: list[str], sandbox: Isolation | None
) -> float:
    """Return the seconds of one whole `codex exec --json` run (spawn to exit)."""
    argv = [codex, "exec", "--json", "--skip-git-repo-check", "--ephemeral"]
    argv += ["--sandbox", "workspace-write", "-c", 'approval_policy="never"']
    for item in overrides:
        argv += ["-c", item]
    argv += ["-C", str(work), "-"]
    t0 = time.perf_counter()
    async for event in Executions(None, sandbox).events(argv, "hi", home, 60, cwd=work):
        if event.get("type") == "exit" and event["exit_code"] != 0:
            raise RuntimeError(f"codex exec failed: {event}")
    return time.perf_counter() - t0


def fmt(values: list[float]) -> str:
    """Return `median (min-max)` in milliseconds."""
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):7.0f} ({min(ms):.0f}-{max(ms):.0f})"


async def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    codex = find_codex_bin()
    if codex is None:
        raise SystemExit("no codex binary (run install.sh)")
    sandbox = gateway_isolation("", ())
    problem = sandbox.problem()
    if problem:
        raise SystemExit(problem)
    backend = FakeBackend().start()
    base = Path(tempfile.mkdtemp(prefix="sandbox-bench-", dir=Path.home()))
    home, work = base / "home", base / "work"
    home.mkdir()
    work.mkdir()
    (home / "auth.json").write_text(json.dumps(make_auth_json("acct_bench", "b@example.com")))
    overrides = codex_overrides(backend.url)
    rows: dict[str, dict[str, list[float]]] = {
        name: {"plain": [], "sandboxed": []}
        for name in ("app-server initialize", "app-server first thread", "exec run")
    }
    try:
        for _ in range(args.runs):
            for variant, iso in (("plain", None), ("sandboxed", sandbox)):
                ready, thread = await appserver_start(codex, home, work, overrides, iso)
                rows["app-server initialize"][variant].append(ready)
                rows["app-server first thread"][variant].append(thread)
                rows["exec run"][variant].append(await exec_run(codex, home, work, overrides, iso))
    finally:
        backend.stop()
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    print(f"codex {codex}\nbwrap {sandbox.bwrap}, {args.runs} runs each, median (min-max) ms")
    print(f"{'':26} {'plain':>18} {'sandboxed':>18} {'added p50':>10}")
    for name, cols in rows.items():
        added = (statistics.median(cols["sandboxed"]) - statistics.median(cols["plain"])) * 1000
        print(f"{name:26} {fmt(cols['plain']):>18} {fmt(cols['sandboxed']):>18} {added:+9.0f}")


if __name__ == "__main__":
    asyncio.run(main())
