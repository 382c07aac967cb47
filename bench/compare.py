"""Side by side with LiteLLM's proxy: the time each gateway adds to the first content of a
streamed chat completion, its CPU per request and its memory, on the same machine, with the same
client, interleaved.

codexpool (`python -m codexpool serve`) runs in front of the instant fake app-server
(codexpool/testing/fake_codex.py, JSON-RPC over stdio), LiteLLM's proxy in front of an instant
fake OpenAI-compatible upstream (bench/fake_upstream.py, HTTP over loopback) that streams the
same four pieces with the same spacing. Each gateway's added time is its time to first content
minus the time straight to its own upstream (the engine driving the fake app-server; the raw
client calling the fake upstream), both timed by benchlib's raw keep-alive client. Runs
alternate A, B, A, B over --rounds rounds, in waves (all streams sent at once) and steady
(streams kept open, starts spread) modes; machine load is sampled around every run, and a run
during which other processes used the CPU is marked. With the real codex binary installed it
also shows codexpool's share next to codex's own time (bench/overhead.py's real path).

LiteLLM is installed from PyPI on first use into bench/.peers/litellm-<version>/ (git-ignored,
reused afterwards). Exit status 3: the peer could not be installed (offline?). Not a test: it
prints a table.

    .venv/bin/python bench/compare.py [--rounds 3] [--levels 1,10,50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from benchlib import (
    FAKE_CODEX,
    FAKE_CODEX_REPLY,
    REPO,
    RawSseClient,
    Timing,
    codex_version,
    cpu_seconds,
    descendants,
    direct_engine,
    machine,
    machine_busy_seconds,
    measure,
    measure_steady,
    one_direct_turn,
    pct,
    rss_kib,
    run_loop,
    start_gateway,
)

from codexpool.codex.engine import Engine
from codexpool.config import find_codex_bin
from codexpool.testing.fake_backend import FakeBackend, codex_overrides

PEER_VERSION = "1.108.7"
PEERS_DIR = REPO / "bench" / ".peers"
EXIT_NO_PEER = 3
MODEL = "codex"  # the model name benchlib.RawSseClient asks for
LITELLM_KEY = "sk-bench-litellm-master"
UPSTREAM_KEY = "sk-fake-upstream"
FAKE_UPSTREAM = Path(__file__).resolve().parent / "fake_upstream.py"
T0 = time.monotonic()

RunOne = Callable[[], Awaitable[Timing]]
Closer = Callable[[], Awaitable[None]]
# Opens a path (a gateway, or straight to its upstream) for N concurrent streams.
OpenPath = Callable[[int], Awaitable[tuple[RunOne, Closer]]]


def progress(what: str) -> None:
    """Say on stderr what the comparison does now (the report goes to stdout)."""
    print(f"[{time.monotonic() - T0:6.1f} s] {what}", file=sys.stderr, flush=True)


# --- the peer's installation ----------------------------------------------------------------


class PeerUnavailable(Exception):
    """LiteLLM could not be installed (no network to PyPI, version gone, ...)."""


def ensure_peer(version: str, root: Path) -> Path:
    """Return a virtual environment holding `litellm[proxy]==version`, installing it on first
    use. A lock keeps two runs from installing into the same folder at once; a marker written
    last tells a complete install from an interrupted one, which is started over."""
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"litellm-{version}"
    marker = venv / ".installed"
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return venv
        progress(f"installing litellm[proxy]=={version} into {venv} (first use only)")
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        try:
            done = subprocess.run(
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "-q",
                    f"litellm[proxy]=={version}",
                ],
                capture_output=True,
                text=True,
                timeout=1800,
            )
        except subprocess.TimeoutExpired as exc:
            raise PeerUnavailable(f"pip install timed out after {exc.timeout} s") from exc
        if done.returncode:
            shutil.rmtree(venv, ignore_errors=True)
            errors = [ln[:300] for ln in done.stderr.splitlines() if "WARNING: " not in ln]
            raise PeerUnavailable("pip install failed:\n" + "\n".join(errors[-15:]))
        marker.write_text(version + "\n")
        return venv


# --- servers --------------------------------------------------------------------------------


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeUpstream:
    """bench/fake_upstream.py as a child process (its own process, as the fake app-server is
    codexpool's: the upstream's CPU lands in neither the gateway's nor the client's)."""

    def __init__(self, delta_ms: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE_UPSTREAM), "--delta-ms", str(delta_ms)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"fake upstream did not start: {line!r}")
        self.port = int(line.split()[-1])
        self.url = f"http://127.0.0.1:{self.port}/v1"

    async def set_delay(self, delta_ms: int) -> None:
        """Space the pieces of the requests that follow `delta_ms` apart."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{self.port}/bench/delay", json={"ms": delta_ms}
            ) as resp,
        ):
            resp.raise_for_status()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class LiteLLMProxy:
    """LiteLLM's proxy with one worker, no database and no callbacks, one model routed to the
    fake upstream through its `openai/` provider."""

    def __init__(self, venv: Path, work: Path, upstream_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "model_list": [
                {
                    "model_name": MODEL,
                    "litellm_params": {
                        "model": f"openai/{MODEL}",
                        "api_base": upstream_url,
                        "api_key": UPSTREAM_KEY,
                    },
                }
            ],
            "litellm_settings": {
                "callbacks": [],
                "success_callback": [],
                "failure_callback": [],
                "set_verbose": False,
            },
            "general_settings": {"master_key": LITELLM_KEY, "disable_spend_logs": True},
        }
        self.config_path = work / "litellm-config.yaml"
        self.config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.argv = [
            str(venv / "bin" / "litellm"),
            "--config",
            str(self.config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--num_workers",
            "1",
            "--keepalive_timeout",
            "75",  # aiohttp's default, codexpool's
            "--telemetry",
            "False",
        ]
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_HOST")}
        # The model cost map from the package, not from GitHub; only errors logged.
        env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
        self.env = env
        self.log_path = work / "litellm.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the proxy's process, in a session of its own (see stop())."""
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.config_path.parent,
                start_new_session=True,
            )

    async def start(self, timeout_s: float = 180) -> None:
        """Start the proxy and wait until its liveness route answers."""
        self.proc = self.spawn()
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"LiteLLM exited early:\n{self.log()[-3000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/health/liveliness") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"LiteLLM did not start within {timeout_s:.0f} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM the proxy's process group (it may have started helpers), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


async def check_answer(url: str, key: str) -> None:
    """Stream one completion and fail unless it carries the fake's whole text, in chunks that
    RawSseClient recognizes as content (else it would time the end as the first content)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    text = []
    raw = b""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as resp,
    ):
        raw = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {raw[:500]!r}")
    for line in raw.splitlines():
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:]).get("choices") or ():
                text.append((choice.get("delta") or {}).get("content") or "")
    if "".join(text) != FAKE_CODEX_REPLY or not RawSseClient._CONTENT.search(raw):
        raise RuntimeError(f"{url}: unexpected answer {''.join(text)!r}: {raw[:500]!r}")


# --- one side of the comparison -------------------------------------------------------------


@dataclass
class Side:
    """A gateway and the direct path to its upstream."""

    name: str
    config: str
    gateway_url: str  # .../v1
    gateway_key: str
    gateway_pids: Callable[[], list[int]]  # whose CPU and RSS are the gateway's
    open_direct: OpenPath


async def open_raw(url: str, key: str, level: int) -> tuple[RunOne, Closer]:
    """Open `level` keep-alive connections to url (fresh ones: a server may close idle ones
    between runs) and return the stream function and the closer."""
    client = RawSseClient(url + "/chat/completions", key)
    await client.open(level)
    return client.stream, client.close


def engine_path(engine: Engine, home: Path) -> OpenPath:
    """The direct path to an app-server: the engine driving it in this process."""

    async def nothing() -> None:
        return None

    async def open_path(level: int) -> tuple[RunOne, Closer]:
        return (lambda: one_direct_turn(engine, home)), nothing

    return open_path


async def time_level(
    open_path: OpenPath,
    level: int,
    mode: str,
    args: argparse.Namespace,
) -> tuple[list[float], list[float], float]:
    """Measure one path at one level; return TTFBs, totals and the wall seconds taken."""
    run_one, close = await open_path(level)
    try:
        await measure(run_one, min(level, 2), 1)  # wake the connections
        t0 = time.perf_counter()
        if mode == "waves":
            ttfb, totals = await measure(run_one, level, args.waves)
        else:
            _, stagger = await run_one()  # spread the starts over one request's duration
            t0 = time.perf_counter()
            ttfb, totals = await measure_steady(
                run_one, level, args.steady_seconds, stagger_s=stagger
            )
        return ttfb, totals, time.perf_counter() - t0
    finally:
        await close()


@dataclass
class Watch:
    """Machine load around one run: /proc/loadavg before it, and the CPU that processes other
    than this script and its children used during it (another test run disturbs the figures)."""

    loadavg: str = ""
    others_cores: float = 0.0
    _t0: float = 0.0
    _busy0: float = 0.0
    _irq0: float = 0.0
    _ours0: float = 0.0

    @staticmethod
    def ours() -> float:
        me = os.getpid()
        return cpu_seconds(me) + sum(cpu_seconds(p) for p in descendants(me))

    def start(self) -> Watch:
        self.loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        self._busy0, self._irq0 = machine_busy_seconds()
        self._ours0 = self.ours()
        self._t0 = time.monotonic()
        return self

    def stop(self) -> None:
        busy, irq = machine_busy_seconds()
        others = (busy - self._busy0) - (irq - self._irq0) - (self.ours() - self._ours0)
        self.others_cores = max(0.0, others / max(1e-6, time.monotonic() - self._t0))


@dataclass
class LevelResult:
    gateway: list[float]
    direct: list[float]
    gateway_seconds: float

    @property
    def added_p50(self) -> float:
        return pct(self.gateway, 0.5) - pct(self.direct, 0.5)


@dataclass
class Run:
    """One side's measurement of one mode in one round."""

    mode: str
    side: str
    round: int
    watch: Watch
    levels: dict[int, LevelResult] = field(default_factory=dict)
    cpu_ms: float | None = None
    rss_mib: float | None = None


async def run_side(side: Side, mode: str, rnd: int, args: argparse.Namespace) -> Run:
    """Measure every level through the gateway and straight to its upstream, then (waves mode)
    the gateway's CPU per request and RSS over a fixed number of requests."""
    watch = Watch().start()
    run = Run(mode, side.name, rnd, watch)

    async def gateway(level: int) -> tuple[RunOne, Closer]:
        return await open_raw(side.gateway_url, side.gateway_key, level)

    for level in args.level_list:
        g, _, seconds = await time_level(gateway, level, mode, args)
        d, _, _ = await time_level(side.open_direct, level, mode, args)
        run.levels[level] = LevelResult(g, d, seconds)
    if mode == "waves" and args.cpu_requests:
        run_one, close = await gateway(args.cpu_streams)
        try:
            pids = side.gateway_pids()
            cpu0 = sum(cpu_seconds(p) for p in pids)
            await measure_steady(run_one, args.cpu_streams, 1e9, cap=args.cpu_requests)
            cpu1 = sum(cpu_seconds(p) for p in pids)
            run.cpu_ms = (cpu1 - cpu0) / args.cpu_requests * 1000
            run.rss_mib = sum(rss_kib(p) for p in side.gateway_pids()) / 1024
        finally:
            await close()
    watch.stop()
    flag = "  DISTURBED" if watch.others_cores > args.disturbed_cores else ""
    added = ", ".join(f"{lv}: {r.added_p50:+.1f}" for lv, r in run.levels.items())
    progress(
        f"round {rnd} {mode:<6} {side.name:<16} added p50 ms {added}; loadavg {watch.loadavg}, "
        f"other processes {watch.others_cores:.2f} cores{flag}"
    )
    return run


@contextlib.asynccontextmanager
async def codexpool_side(work: Path, delta_ms: int, top: int) -> AsyncIterator[Side]:
    """codexpool's gateway and its engine driving the fake app-server directly, the fake's
    deltas `delta_ms` apart."""
    os.environ["FAKE_CODEX_DELAY_MS"] = str(delta_ms)  # read by the fake app-server at start
    fake = FakeBackend().start()  # unused by the fake app-server; the settings want one
    overrides = codex_overrides(fake.url)
    server, key = start_gateway(
        work, FAKE_CODEX, overrides, maxTurnsPerAccount=top, maxQueueWaitMs=60_000
    )
    engine, home = direct_engine(work, FAKE_CODEX, overrides, top)
    assert server.proc is not None
    gw = server.proc.pid
    try:
        await check_answer(server.api, key)
        async with engine:
            yield Side(
                "codexpool",
                "codexpool (this commit): `python -m codexpool serve`, one process (aiohttp on "
                "uvloop), 1 linked account, request log to SQLite on, logLevel warning, "
                f"maxTurnsPerAccount {top}; upstream: the fake app-server "
                "(codexpool/testing/fake_codex.py) over stdio JSON-RPC; direct path: the "
                "engine driving that fake in this process",
                server.api,
                key,
                lambda: [gw],  # not its child, the fake app-server: that is the upstream
                engine_path(engine, home),
            )
    finally:
        server.stop()
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)


def litellm_side(proxy: LiteLLMProxy, upstream: FakeUpstream, version: str) -> Side:
    """LiteLLM's proxy and the raw client calling its fake upstream directly."""
    assert proxy.proc is not None
    pid = proxy.proc.pid

    async def direct(level: int) -> tuple[RunOne, Closer]:
        return await open_raw(upstream.url, UPSTREAM_KEY, level)

    return Side(
        "LiteLLM",
        f"LiteLLM {version} proxy: `{' '.join(['litellm', *proxy.argv[1:]])}` (uvicorn on "
        "uvloop, one worker), no database, callbacks off (callbacks/success/failure []), "
        "master_key set, one model `openai/codex` with api_base the fake upstream "
        "(bench/fake_upstream.py, aiohttp, HTTP/1.1 over loopback); direct path: the same raw "
        "client calling that fake upstream",
        proxy.url + "/v1",
        LITELLM_KEY,
        lambda: [pid, *descendants(pid)],
        direct,
    )


# --- the real codex binary ------------------------------------------------------------------


async def real_codex(args: argparse.Namespace) -> tuple[str, dict[int, list[LevelResult]]] | None:
    """codexpool's gateway-added time over a bare app-server with the real binary, waves."""
    levels = [int(x) for x in args.real_levels.split(",") if x]
    codex_bin = find_codex_bin()
    if not levels or not codex_bin:
        return None
    version = await codex_version(codex_bin)
    fake = FakeBackend().start()
    overrides = codex_overrides(fake.url)
    work = Path(tempfile.mkdtemp(prefix="codexpool-compare-real-"))
    top = max(levels)
    server, key = start_gateway(
        work, codex_bin, overrides, maxTurnsPerAccount=top, maxQueueWaitMs=60_000
    )
    engine, home = direct_engine(work, codex_bin, overrides, top)
    results: dict[int, list[LevelResult]] = {lv: [] for lv in levels}
    try:
        async with engine:

            async def gateway(level: int) -> tuple[RunOne, Closer]:
                return await open_raw(server.api, key, level)

            sub = argparse.Namespace(waves=args.real_waves)
            for rnd in range(1, args.rounds + 1):
                for level in levels:
                    g, _, seconds = await time_level(gateway, level, "waves", sub)
                    d, _, _ = await time_level(engine_path(engine, home), level, "waves", sub)
                    results[level].append(LevelResult(g, d, seconds))
                    progress(
                        f"round {rnd} real codex {level} streams: direct p50 "
                        f"{pct(d, 0.5):.1f} ms, gateway-added {results[level][-1].added_p50:+.1f}"
                    )
    finally:
        server.stop()
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)
    return version, results


# --- report ---------------------------------------------------------------------------------


def spread(values: list[float], fmt: str = "{:+.1f}") -> str:
    """Median of the rounds and their range: `+1.0 [+0.8..+1.3]`."""
    if not values:
        return "n/a"
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} [{fmt.format(min(values))}..{fmt.format(max(values))}]"


def ratio(peer: list[float], ours: list[float]) -> str:
    if not peer or not ours:
        return "n/a"
    a, b = statistics.median(peer), statistics.median(ours)
    return f"{a / b:.0f}x" if b > 0.05 and a > 0 else "n/a"


def report(
    args: argparse.Namespace,
    runs: list[Run],
    configs: list[str],
    real: tuple[str, dict[int, list[LevelResult]]] | None,
) -> None:
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\ncodexpool vs LiteLLM {args.peer_version} proxy, {now}, commit {commit or '?'}; "
        f"{machine()}"
    )
    for config in configs:
        print(f"  - {config}")
    print(
        f"  client: benchlib.RawSseClient (keep-alive, prepared bytes) for both gateways; "
        f"{args.rounds} rounds, each codexpool then LiteLLM; waves: {args.waves} waves per "
        f"level, instant upstreams; steady: {args.steady_seconds:g} s per level, starts "
        f"spread, {args.delta_ms} ms before each of the 4 pieces"
    )

    print("\nper path, all rounds pooled (ms; req/s: through the gateway, steady mode)")
    print(
        f"{'mode':<7}{'side':<11}{'streams':>7}{'n':>6}{'gw p50':>9}{'gw p99':>9}"
        f"{'direct p50':>11}{'direct p99':>11}{'added p50':>10}{'added p99':>10}{'req/s':>8}"
    )
    modes = [m for m in ("waves", "steady") if any(r.mode == m for r in runs)]
    sides = list(dict.fromkeys(r.side for r in runs))
    for mode in modes:
        for side in sides:
            mine = [r for r in runs if r.mode == mode and r.side == side]
            for level in args.level_list:
                g = [x for r in mine for x in r.levels[level].gateway]
                d = [x for r in mine for x in r.levels[level].direct]
                secs = sum(r.levels[level].gateway_seconds for r in mine)
                print(
                    f"{mode:<7}{side:<11}{level:>7}{len(g):>6}{pct(g, 0.5):>9.1f}"
                    f"{pct(g, 0.99):>9.1f}{pct(d, 0.5):>11.1f}{pct(d, 0.99):>11.1f}"
                    f"{pct(g, 0.5) - pct(d, 0.5):>+10.1f}{pct(g, 0.99) - pct(d, 0.99):>+10.1f}"
                    + (f"{len(g) / secs:>8.0f}" if mode == "steady" and secs else "")
                )

    ours, peer = sides[0], sides[-1]
    print(
        f"\ngateway-added time to first content, p50 per run (ms): median of {args.rounds} "
        "round(s) [min..max]"
    )
    print(f"{'mode':<7}{'streams':>7}   {ours:<26}{peer:<26}{'ratio':>6}")
    for mode in modes:
        for level in args.level_list:
            a = [r.levels[level].added_p50 for r in runs if (r.mode, r.side) == (mode, ours)]
            b = [r.levels[level].added_p50 for r in runs if (r.mode, r.side) == (mode, peer)]
            print(f"{mode:<7}{level:>7}   {spread(a):<26}{spread(b):<26}{ratio(b, a):>6}")
    cpu = {s: [r.cpu_ms for r in runs if r.side == s and r.cpu_ms is not None] for s in sides}
    rss = {s: [r.rss_mib for r in runs if r.side == s and r.rss_mib is not None] for s in sides}
    if cpu[ours] and cpu[peer]:
        print(
            f"{'CPU ms per streamed request':<29}{spread(cpu[ours], '{:.2f}'):<26}"
            f"{spread(cpu[peer], '{:.2f}'):<26}{ratio(cpu[peer], cpu[ours]):>6}"
        )
        print(
            f"{'RSS MiB after the requests':<29}{spread(rss[ours], '{:.0f}'):<26}"
            f"{spread(rss[peer], '{:.0f}'):<26}{ratio(rss[peer], rss[ours]):>6}"
        )
        print(
            f"  (gateway processes only: codexpool's server without its fake app-server, "
            f"LiteLLM's with any children; {args.cpu_requests} requests at "
            f"{args.cpu_streams} streams per round, instant upstreams)"
        )

    disturbed = [r for r in runs if r.watch.others_cores > args.disturbed_cores]
    loads = ", ".join(r.watch.loadavg.split()[0] for r in runs)
    print(
        f"\nmachine: 1-min loadavg before each run: {loads}; runs during which other processes "
        f"used more than {args.disturbed_cores:.2f} cores: {len(disturbed)} of {len(runs)}"
    )
    for r in disturbed:
        print(
            f"  DISTURBED: round {r.round} {r.mode} {r.side}: other processes "
            f"{r.watch.others_cores:.2f} cores (loadavg before {r.watch.loadavg})"
        )

    if real is None:
        print("\nreal codex binary: skipped (not installed, or --real-levels empty)")
        return
    version, results = real
    print(
        f"\nreal codex binary ({version}) behind codexpool, fake ChatGPT backend answering "
        f"instantly, {args.real_waves} waves per level per round: codex's own time to first "
        "text (engine driving a bare app-server) and what the gateway adds to it (ms)"
    )
    print(f"{'streams':>7}   {'codex own p50':<26}{'codexpool-added p50':<26}{'share':>6}")
    for level, rows in results.items():
        own = [pct(r.direct, 0.5) for r in rows]
        added = [r.added_p50 for r in rows]
        med_own, med_added = statistics.median(own), statistics.median(added)
        share = f"{med_added / (med_own + med_added):.0%}" if med_added > 0 else "n/a"
        print(f"{level:>7}   {spread(own, '{:.1f}'):<26}{spread(added):<26}{share:>6}")


# --- main -----------------------------------------------------------------------------------


async def compare(args: argparse.Namespace, venv: Path) -> None:
    top = max(args.level_list)
    work = Path(tempfile.mkdtemp(prefix="codexpool-compare-"))
    runs: list[Run] = []
    configs: dict[str, str] = {}
    upstream = FakeUpstream(0)
    proxy = LiteLLMProxy(venv, work, upstream.url)
    try:
        progress(f"starting LiteLLM {args.peer_version} (log: {proxy.log_path})")
        await proxy.start()
        peer = litellm_side(proxy, upstream, args.peer_version)
        for mode in args.modes.split(","):
            delta = 0 if mode == "waves" else args.delta_ms
            # The same upstream and proxy for both modes (the proxy takes ~10-20 s to start);
            # codexpool's fake app-server reads its spacing at start, so its gateway restarts.
            await upstream.set_delay(delta)
            await check_answer(proxy.url + "/v1", LITELLM_KEY)
            async with codexpool_side(
                Path(tempfile.mkdtemp(prefix="codexpool-compare-gw-")), delta, top
            ) as ours:
                configs[ours.name], configs[peer.name] = ours.config, peer.config
                for side in (ours, peer):  # warm-up: imports, pools, first-request paths
                    run_one, close = await open_raw(side.gateway_url, side.gateway_key, 2)
                    await measure(run_one, 2, 3)
                    await close()
                for rnd in range(1, args.rounds + 1):
                    for side in (ours, peer):
                        runs.append(await run_side(side, mode, rnd, args))
    finally:
        proxy.stop()
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)
    real = await real_codex(args)
    report(args, runs, list(configs.values()), real)
    if args.json_out:
        args.json_out.write_text(json.dumps(summary(args, runs, configs, real), indent=2))


def summary(
    args: argparse.Namespace,
    runs: list[Run],
    configs: dict[str, str],
    real: tuple[str, dict[int, list[LevelResult]]] | None,
) -> dict:
    """The figures as data (for --json-out): per mode, level and side the added p50 of every
    round, the sample counts, CPU and RSS per round, the load around each run."""
    added: dict[str, dict[str, dict[str, list[float]]]] = {}
    counts: dict[str, dict[str, dict[str, list[int]]]] = {}
    for r in runs:
        for level, res in r.levels.items():
            added.setdefault(r.mode, {}).setdefault(str(level), {}).setdefault(r.side, [])
            added[r.mode][str(level)][r.side].append(res.added_p50)
            counts.setdefault(r.mode, {}).setdefault(str(level), {}).setdefault(r.side, [])
            counts[r.mode][str(level)][r.side].append(len(res.gateway))
    return {
        "peer_version": args.peer_version,
        "configs": configs,
        "added_p50_ms": added,
        "gateway_requests": counts,
        "cpu_ms_per_request": {
            s: [r.cpu_ms for r in runs if r.side == s and r.cpu_ms is not None] for s in configs
        },
        "rss_mib": {
            s: [r.rss_mib for r in runs if r.side == s and r.rss_mib is not None] for s in configs
        },
        "runs": [
            {
                "mode": r.mode,
                "side": r.side,
                "round": r.round,
                "loadavg": r.watch.loadavg,
                "other_cores": r.watch.others_cores,
                "disturbed": r.watch.others_cores > args.disturbed_cores,
            }
            for r in runs
        ],
        "real_codex": None
        if real is None
        else {
            "version": real[0],
            "codex_own_p50_ms": {
                str(lv): [pct(x.direct, 0.5) for x in rows] for lv, rows in real[1].items()
            },
            "gateway_added_p50_ms": {
                str(lv): [x.added_p50 for x in rows] for lv, rows in real[1].items()
            },
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved A, B rounds")
    parser.add_argument("--levels", default="1,10,50", help="concurrent streams")
    parser.add_argument("--modes", default="waves,steady")
    parser.add_argument("--waves", type=int, default=20, help="waves per level per run")
    parser.add_argument("--steady-seconds", type=float, default=6.0, help="per level per run")
    parser.add_argument(
        "--delta-ms", type=int, default=100, help="steady mode: ms before each of the 4 pieces"
    )
    parser.add_argument(
        "--cpu-requests", type=int, default=1000, help="requests per run for CPU and RSS"
    )
    parser.add_argument("--cpu-streams", type=int, default=10)
    parser.add_argument(
        "--real-levels",
        default="1",
        help="real codex binary: streams ('' to skip; from 10 on codex fills both cores and the "
        "gateway's share drowns in codex's own CPU)",
    )
    parser.add_argument("--real-waves", type=int, default=10, help="real codex: waves per level")
    parser.add_argument("--peer-version", default=PEER_VERSION)
    parser.add_argument("--peers-dir", type=Path, default=PEERS_DIR)
    parser.add_argument(
        "--disturbed-cores",
        type=float,
        default=0.25,
        help="mark a run during which other processes used more than this many cores",
    )
    parser.add_argument("--json-out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    args.level_list = [int(x) for x in args.levels.split(",")]
    try:
        venv = ensure_peer(args.peer_version, args.peers_dir)
    except PeerUnavailable as exc:
        print(f"LiteLLM {args.peer_version} could not be installed: {exc}", file=sys.stderr)
        sys.exit(EXIT_NO_PEER)
    run_loop(compare(args, venv))


if __name__ == "__main__":
    main()
