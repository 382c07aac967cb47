"""Parts shared by the benchmarks: start the real gateway with a linked account, stream through
it with a raw SSE client, drive a warm app-server directly with the engine, percentiles, and
/proc readings (RSS, CPU) of the gateway and its children.

One copy keeps bench/overhead.py and bench/load.py measuring the same thing the same way, so
their figures can be compared. Importing this module puts the repository on sys.path (the
benchmarks run as plain scripts: `.venv/bin/python bench/load.py`).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from codexpool.cli import new_event_loop  # noqa: E402
from codexpool.codex.engine import Engine, EngineConfig, TurnRequest  # noqa: E402
from codexpool.codex.events import TextDelta  # noqa: E402
from codexpool.codex.process import rss_mib  # noqa: E402
from tests.conftest import LiveServer, write_settings  # noqa: E402
from tests.e2e_helpers import link_user  # noqa: E402

FAKE_CODEX = str(REPO / "codexpool" / "testing" / "fake_codex.py")
# What codexpool/testing/fake_codex.py streams for every turn.
FAKE_CODEX_REPLY = "Hello from the fake app-server."

Timing = tuple[float, float]  # (time to first content, total), seconds


def run_loop(coro: Any) -> Any:
    """Run a benchmark on the event loop the gateway itself uses (uvloop when installed), so
    the client and the directly driven engine are not handicapped against the gateway."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)


async def codex_version(codex_bin: str) -> str:
    """Return `codex --version`."""
    proc = await asyncio.create_subprocess_exec(
        codex_bin, "--version", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.decode().strip()


def pct(values: list[float], q: float) -> float:
    """Return the q-quantile (0..1) in milliseconds of values in seconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[idx] * 1000


def start_gateway(
    work: Path, codex_bin: str, overrides: list[str], **settings: Any
) -> tuple[LiveServer, str]:
    """Start `python -m codexpool serve` with one user linked to fake account acct_bench.

    Returns the running server and the user's API key. Extra keyword arguments are settings.
    """
    server = LiveServer(
        write_settings(
            work / "data",
            codexBin=codex_bin,
            codexConfigOverrides=overrides,
            logLevel="warning",
            **settings,
        )
    )
    key = link_user(server, work, "bench", "acct_bench")
    server.start()
    return server, key


def direct_engine(
    work: Path, codex_bin: str, overrides: list[str], max_turns: int
) -> tuple[Engine, Path]:
    """Return an engine (not yet entered) and a CODEX_HOME holding the bench account's login.

    Call after start_gateway(): the login is copied from the auth.json it wrote.
    """
    home = work / "direct-home"
    home.mkdir(exist_ok=True)
    (home / "auth.json").write_text((work / "bench-auth.json").read_text())
    config = EngineConfig(
        codex_bin=codex_bin,
        config_overrides=tuple(overrides),
        max_turns_per_account=max_turns,
        max_queue_wait_s=60,
        scratch_root=work / "scratch",
    )
    return Engine(config), home


async def one_gateway_stream(session: aiohttp.ClientSession, url: str, key: str) -> Timing:
    """Stream one chat completion; return (time to first content chunk, total)."""
    body = {"model": "codex", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    t0 = time.perf_counter()
    first = None
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if first is None and line.startswith(b"data: {") and b'"content":"' in line:
                if b'"content":""' not in line:
                    first = time.perf_counter() - t0
            if line.strip() == b"data: [DONE]":
                break
    total = time.perf_counter() - t0
    return (first if first is not None else total), total


class RawSseClient:
    """A minimal keep-alive HTTP/1.1 client for the gateway's chat stream.

    aiohttp's client spends ~0.1-0.2 ms of CPU per request building the request and parsing
    the response; in a burst of 50 that cost lands in every measured time-to-first-byte, though
    it is the client's, not the gateway's. This client writes prepared bytes on an open
    connection and scans the raw chunks, so what it times is (nearly) only the server's work.
    bench/overhead.py uses it by default; `--client aiohttp` measures with aiohttp instead.
    """

    _CONTENT = re.compile(rb'"content": ?"[^"]')  # LiteLLM puts a space after the colon

    def __init__(self, url: str, key: str) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        body = json.dumps(
            {"model": "codex", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        ).encode()
        self._request = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def open(self, n: int) -> None:
        """Open n connections up front so no measured request pays for a TCP handshake."""
        for _ in range(n):
            self._idle.append(await asyncio.open_connection(self._host, self._port))

    async def stream(self) -> Timing:
        """Stream one chat completion; return (time to first content chunk, total)."""
        reader, writer = self._idle.pop() if self._idle else await self._connect()
        t0 = time.perf_counter()
        writer.write(self._request)
        first = None
        seen = b""
        while True:
            data = await reader.read(65536)
            if not data:
                raise RuntimeError("the gateway closed the connection mid-response")
            if not seen and not data.startswith(b"HTTP/1.1 200 "):
                raise RuntimeError(data.decode(errors="replace"))
            seen = seen[-64:] + data  # a marker may straddle two reads
            if first is None and self._CONTENT.search(seen):
                first = time.perf_counter() - t0
            if seen.endswith(b"\r\n0\r\n\r\n") and b"[DONE]" in seen:
                break
        total = time.perf_counter() - t0
        self._idle.append((reader, writer))
        return (first if first is not None else total), total

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self._host, self._port)

    async def close(self) -> None:
        """Close every idle connection."""
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def one_direct_turn(engine: Engine, home: Path) -> Timing:
    """Run one turn on the engine directly; return (time to first text, total)."""
    t0 = time.perf_counter()
    first = None
    async for event in engine.run_turn("direct", home, TurnRequest(prompt="hi")):
        if first is None and isinstance(event, TextDelta) and event.text:
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return (first if first is not None else total), total


async def measure(
    run_one: Callable[[], Awaitable[Timing]], level: int, rounds: int
) -> tuple[list[float], list[float]]:
    """Run `rounds` waves of `level` concurrent requests; return TTFB and totals."""
    ttfb: list[float] = []
    totals: list[float] = []
    for _ in range(rounds):
        results = await asyncio.gather(*(run_one() for _ in range(level)))
        for first, total in results:
            ttfb.append(first)
            totals.append(total)
    return ttfb, totals


async def measure_steady(
    run_one: Callable[[], Awaitable[Timing]],
    level: int,
    seconds: float,
    cap: int | None = None,
    stagger_s: float = 0.0,
) -> tuple[list[float], list[float]]:
    """Keep `level` requests in flight for `seconds` (each client starts a new one when one
    ends), starting at most `cap` requests in all when given.

    With `stagger_s` (about one request's duration) the clients start spread over that time,
    so requests arrive independently, as from unrelated users; without it they all start at
    once and, when every request takes as long, stay in lockstep: a burst per round.
    """
    ttfb: list[float] = []
    totals: list[float] = []
    stop_at = time.perf_counter() + seconds
    started = 0

    async def client(index: int) -> None:
        nonlocal started
        await asyncio.sleep(stagger_s * index / level)
        while time.perf_counter() < stop_at and (cap is None or started < cap):
            started += 1
            first, total = await run_one()
            ttfb.append(first)
            totals.append(total)

    await asyncio.gather(*(client(i) for i in range(level)))
    return ttfb, totals


# --- /proc readings -------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """Return /proc/<pid>/stat fields after the command name (field 3 onwards)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """Return the live pids descending from pid (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry.name))
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(children.get(child, []))
    return found


def rss_kib(pid: int) -> int:
    """Return VmRSS of pid in KiB (0 once it is gone), as the engine reads it for recycling."""
    return round((rss_mib(pid) or 0.0) * 1024)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_seconds(pid: int, first: int) -> float:
    """Return the sum of two adjacent clock-tick fields of /proc/<pid>/stat in seconds (0 once
    the process is gone); `first` indexes _stat_fields."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[first]) + int(fields[first + 1])) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """Return the user+system CPU seconds pid used so far (0 once it is gone)."""
    return _stat_seconds(pid, 11)  # utime, stime (fields 14, 15)


def reaped_children_cpu_seconds(pid: int) -> float:
    """Return the CPU seconds of pid's children that ended and were reaped (cutime + cstime),
    theirs and their own reaped children's: where a replaced app-server's CPU goes."""
    return _stat_seconds(pid, 13)  # cutime, cstime (fields 16, 17)


def machine_busy_seconds() -> tuple[float, float]:
    """Return the CPU seconds all cores spent busy since boot (every process and the kernel),
    and the part of it spent in interrupts (loopback networking is mostly softirq time, which
    no process is charged for).

    Set against the benchmark's own processes it shows how much else ran meanwhile (another
    test run on the same machine disturbs the figures).
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK, (irq + softirq) / CLK_TCK


def machine() -> str:
    """Describe the machine: cores, CPU model, Python version."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"
