"""Load test: many concurrent streaming clients through the real gateway for a fixed time.

Starts `python -m codexpool serve` on loopback with one linked account whose app-server is the
instant fake (`codexpool/testing/fake_codex.py`, so the gateway is what is measured; or the real
codex binary against the fake ChatGPT backend with --real-codex), then keeps --clients streaming
chat completions in flight for --seconds from --procs client processes (lean aiohttp SSE
clients, each checking the whole answer: every content delta, the usage chunk and [DONE]).

It reports errors by kind (zero expected), requests/s, time to first token p50/p99 next to the
same app-server driven directly by the engine at the same concurrency (the gateway-added
share), the CPU each process used, the RSS of the gateway and its app-server before, during
and after the load (a leak shows as growth over 10,000+ requests), and whether the gateway's
request log holds exactly one row per request made. Bounded: every request has a timeout and
client processes that outlive the run are killed. Not a test: it prints a table.

    .venv/bin/python bench/load.py [--clients 200] [--seconds 60] [--requests N] [--procs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import multiprocessing
import multiprocessing.connection
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from benchlib import (
    FAKE_CODEX,
    FAKE_CODEX_REPLY,
    codex_version,
    cpu_seconds,
    descendants,
    direct_engine,
    machine,
    machine_busy_seconds,
    measure_steady,
    one_direct_turn,
    pct,
    reaped_children_cpu_seconds,
    rss_kib,
    run_loop,
    start_gateway,
)

from codexpool.config import find_codex_bin
from codexpool.testing.fake_backend import DEFAULT_REPLY, FakeBackend, codex_overrides
from tests.e2e_helpers import usage_rows

# --- the client side (runs in each client process) ------------------------------------------


@dataclass
class WorkerResult:
    """What one client process saw; sent back to the parent over a pipe."""

    ok: int = 0
    ttfb: list[float] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: dict[str, str] = field(default_factory=dict)
    started: int = 0
    cpu_s: float = 0.0


class StreamError(Exception):
    """A request that did not end in the complete, expected answer; args[0] is its kind."""


async def one_stream(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, expected: str
) -> tuple[float, float]:
    """Stream one chat completion and check all of it; return (TTFB, total) or raise."""
    t0 = time.perf_counter()
    first = None
    pieces: list[str] = []
    usage = None
    done = False
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status != 200:
            raw = await resp.read()
            try:
                code = json.loads(raw)["error"].get("code")
            except (ValueError, KeyError, TypeError, AttributeError):
                code = None
            raise StreamError(f"http {resp.status} {code}", raw[:300].decode(errors="replace"))
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].strip()
            if payload == b"[DONE]":
                done = True
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                raise StreamError("error event in stream", payload[:300].decode())
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if first is None:
                        first = time.perf_counter() - t0
                    pieces.append(text)
    total = time.perf_counter() - t0
    if not done:
        raise StreamError("stream ended without [DONE]", "".join(pieces))
    if "".join(pieces) != expected:
        raise StreamError("wrong answer text", "".join(pieces)[:300])
    if not usage or not usage.get("completion_tokens"):
        raise StreamError("no usage chunk", repr(usage))
    return (first if first is not None else total), total


async def worker_run(
    url: str,
    key: str,
    clients: int,
    cap: int | None,
    start_at: float,
    stop_at: float,
    timeout_s: float,
    expected: str,
    counter: Any,
) -> WorkerResult:
    """Keep `clients` streams in flight from start_at until stop_at (time.monotonic)."""
    result = WorkerResult()
    cpu_start = time.process_time()
    body = json.dumps(
        {
            "model": "codex",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    conn = aiohttp.TCPConnector(limit=clients + 4)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))

        async def client() -> None:
            while time.monotonic() < stop_at and (cap is None or result.started < cap):
                result.started += 1
                try:
                    first, total = await one_stream(session, url, headers, body, expected)
                except StreamError as exc:
                    kind, detail = exc.args[0], exc.args[1]
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    kind, detail = type(exc).__name__, str(exc)[:300]
                else:
                    result.ok += 1
                    result.ttfb.append(first)
                    result.totals.append(total)
                    with counter.get_lock():
                        counter.value += 1
                    continue
                result.errors[kind] += 1
                result.examples.setdefault(kind, detail)
                with counter.get_lock():
                    counter.value += 1

        await asyncio.gather(*(client() for _ in range(clients)))
    result.cpu_s = time.process_time() - cpu_start
    return result


def worker_main(
    conn: multiprocessing.connection.Connection,
    clients: int,
    cap: int | None,
    timeout_s: float,
    expected: str,
    counter: Any,
) -> None:
    """Client process entry: report ready, wait for the go (URL, key, start and stop times),
    run, send the results back."""
    conn.send("ready")
    url, key, start_at, stop_at = conn.recv()
    result = run_loop(
        worker_run(url, key, clients, cap, start_at, stop_at, timeout_s, expected, counter)
    )
    conn.send(dataclasses.asdict(result))  # plain data: pickles across __main__ modules
    conn.close()


# --- the parent: gateway, sampling, direct comparison, report ------------------------------

T0 = time.monotonic()


def progress(what: str) -> None:
    """Say on stderr what the benchmark does now (the report goes to stdout)."""
    print(f"[{time.monotonic() - T0:6.1f} s] {what}", file=sys.stderr, flush=True)


@dataclass
class Sample:
    """Memory of the gateway and its children, and the gateway's CPU so far, at one moment."""

    label: str
    requests: int
    gateway_kib: int
    children_kib: int
    children: int
    gateway_cpu_s: float


def sample(label: str, gateway_pid: int, requests: int) -> Sample:
    """Read VmRSS of the gateway and of every process it started, and the gateway's CPU."""
    kids = descendants(gateway_pid)
    return Sample(
        label,
        requests,
        rss_kib(gateway_pid),
        sum(rss_kib(p) for p in kids),
        len(kids),
        cpu_seconds(gateway_pid),
    )


def split(total: int, parts: int) -> list[int]:
    """Split total into `parts` near-equal integers."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run_load(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark, print the report and return the figures ("ok": all well)."""
    codex_bin = find_codex_bin() if args.real_codex else FAKE_CODEX
    if not codex_bin:
        raise SystemExit("codex binary not found (run scripts/install-codex.sh)")
    version = await codex_version(codex_bin) if args.real_codex else "fake app-server"
    expected = DEFAULT_REPLY if args.real_codex else FAKE_CODEX_REPLY
    os.environ["FAKE_CODEX_DELAY_MS"] = str(args.delta_ms)  # read by the fake app-server
    procs = max(1, min(args.procs, args.clients))

    # Client processes first: their start-up (imports) overlaps the gateway's.
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    caps: list[int | None] = list(split(args.requests, procs)) if args.requests else [None] * procs
    pipes = []
    workers = []
    for i, (clients, cap) in enumerate(zip(split(args.clients, procs), caps, strict=True)):
        parent_end, child_end = ctx.Pipe()
        p = ctx.Process(
            target=worker_main,
            args=(child_end, clients, cap, args.timeout, expected, counter),
            name=f"load-client-{i}",
            daemon=True,  # never outlive this script
        )
        p.start()
        child_end.close()
        pipes.append(parent_end)
        workers.append(p)

    progress(f"{procs} client process(es) starting; starting the gateway")
    fake = FakeBackend().start()
    fake.set_default_delay(args.delta_ms)
    overrides = codex_overrides(fake.url)
    work = Path(tempfile.mkdtemp(prefix="codexpool-load-"))
    server, key = start_gateway(
        work,
        codex_bin,
        overrides,
        maxTurnsPerAccount=args.clients,
        maxQueueWaitMs=int(args.timeout * 1000),
    )
    assert server.proc is not None
    gw = server.proc.pid
    url = server.api + "/chat/completions"
    samples: list[Sample] = []
    results: list[WorkerResult] = []
    warm = 0
    try:
        progress(f"gateway up (pid {gw}); warming up with {args.warmup} requests")
        # Warm up: the app-server started, the account's limits read, code paths imported.
        warm_result = await worker_run(
            url,
            key,
            min(args.clients, 10),
            args.warmup,
            time.monotonic(),
            time.monotonic() + 60,
            args.timeout,
            expected,
            multiprocessing.Value("q", 0),
        )
        warm = warm_result.started
        if warm_result.errors:
            print(f"warm-up failed: {dict(warm_result.errors)} {warm_result.examples}")
            print(server.log()[-3000:])
            print(f"data kept in {work}")
            fake.stop()
            return {"ok": False, "error": "warm-up failed"}
        await asyncio.sleep(args.settle)
        samples.append(sample("idle after warm-up", gw, 0))

        progress("waiting for the client processes")
        for pipe in pipes:
            if not pipe.poll(60):
                raise SystemExit("a client process did not start within 60 s")
            pipe.recv()
        cpu_pids = [gw, *descendants(gw)]
        cpu0 = {pid: cpu_seconds(pid) for pid in cpu_pids}
        reaped0 = reaped_children_cpu_seconds(gw)
        busy0 = machine_busy_seconds()
        own0 = cpu_seconds(os.getpid())
        cpu_t0 = time.monotonic()
        start_at = time.monotonic() + 0.2
        stop_at = start_at + args.seconds
        for pipe in pipes:
            pipe.send((url, key, start_at, stop_at))
        progress(f"load: {args.clients} clients for {args.seconds:g} s")
        hard_stop = stop_at + args.timeout + 30
        next_sample = start_at + args.sample_every
        pending = dict(enumerate(pipes))
        got: dict[int, WorkerResult] = {}
        cpu1: dict[int, float] = {}
        while pending and time.monotonic() < hard_stop:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            if now >= next_sample and now < stop_at:
                samples.append(sample(f"under load, t={now - start_at:4.0f} s", gw, counter.value))
                next_sample += args.sample_every
            for i, pipe in list(pending.items()):
                if pipe.poll():
                    try:
                        got[i] = WorkerResult(**pipe.recv())
                    except EOFError:  # it died without a word (its traceback is on stderr)
                        got[i] = WorkerResult(errors=collections.Counter(crashed_client=1))
                        got[i].examples["crashed_client"] = f"client process {i} died"
                    del pending[i]
        elapsed = time.monotonic() - start_at
        # App-servers replaced meanwhile (appServerRecycleMib) are gone: their CPU is in the
        # gateway's reaped-children time; their replacements are new descendants.
        for pid in {*cpu_pids, *descendants(gw)}:
            cpu1[pid] = cpu_seconds(pid)
        reaped = reaped_children_cpu_seconds(gw) - reaped0
        busy1 = machine_busy_seconds()
        busy, irq = busy1[0] - busy0[0], busy1[1] - busy0[1]
        own_cpu = cpu_seconds(os.getpid()) - own0
        window = time.monotonic() - cpu_t0  # the span the CPU readings cover
        for i, p in enumerate(workers):
            if i in pending:
                print(f"client process {i} did not finish by the hard stop: killed")
                p.kill()
            p.join(5)
        results = [got[i] for i in sorted(got)]
        await asyncio.sleep(args.settle)
        samples.append(sample("idle after load", gw, counter.value))
        progress("load done; stopping the gateway")
    finally:
        code = server.stop()  # graceful: drains the usage writer before exiting
    rows = usage_rows(server, "status")

    # The same app-server, driven directly by the engine at the same concurrency.
    direct_ttfb: list[float] = []
    direct_n = 0
    if args.direct_seconds > 0:
        progress("driving the app-server directly for the comparison")
        engine, home = direct_engine(work, codex_bin, overrides, args.clients)
        async with engine:
            await measure_steady(lambda: one_direct_turn(engine, home), 4, 1.0, cap=args.warmup)
            t0 = time.monotonic()
            direct_ttfb, _ = await measure_steady(
                lambda: one_direct_turn(engine, home),
                args.clients,
                min(args.direct_seconds, args.seconds),
                cap=args.requests or None,
            )
            direct_elapsed = time.monotonic() - t0
            direct_n = len(direct_ttfb)
    fake.stop()

    # --- report ---------------------------------------------------------------------------
    ok = sum(r.ok for r in results)
    errors: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    for r in results:
        errors.update(r.errors)
        for k, v in r.examples.items():
            examples.setdefault(k, v)
    made = sum(r.started for r in results)
    ttfb = [x for r in results for x in r.ttfb]
    totals = [x for r in results for x in r.totals]
    print()
    print(
        f"codexpool load: {args.clients} streaming clients in {procs} client process(es), "
        f"{args.seconds:g} s"
        + (f", at most {args.requests} requests" if args.requests else "")
        + f"; {version}"
        + (f" ({args.delta_ms} ms between deltas)" if args.delta_ms else ", answering instantly")
    )
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print()
    print(f"{'requests':<34}{made:>10}   in {elapsed:.1f} s")
    print(f"{'  ok (complete, checked answers)':<34}{ok:>10}")
    print(f"{'  errors':<34}{sum(errors.values()):>10}")
    for kind, n in errors.most_common():
        print(f"    {kind:<30}{n:>10}   e.g. {examples[kind][:120]!r}")
    print(f"{'requests/s (ok)':<34}{ok / elapsed:>10.1f}")
    print()
    print(f"{'(ms)':<34}{'p50':>10}{'p99':>10}{'max':>10}")
    print(
        f"{'TTFT through the gateway':<34}{pct(ttfb, 0.5):>10.1f}{pct(ttfb, 0.99):>10.1f}"
        f"{pct(ttfb, 1.0):>10.1f}"
    )
    print(
        f"{'total through the gateway':<34}{pct(totals, 0.5):>10.1f}{pct(totals, 0.99):>10.1f}"
        f"{pct(totals, 1.0):>10.1f}"
    )
    if direct_ttfb:
        print(
            f"{'TTFT direct app-server':<34}{pct(direct_ttfb, 0.5):>10.1f}"
            f"{pct(direct_ttfb, 0.99):>10.1f}{pct(direct_ttfb, 1.0):>10.1f}"
            f"   ({direct_n} turns, {direct_n / direct_elapsed:.0f}/s, same concurrency)"
        )
        print(
            f"{'gateway-added TTFT':<34}{pct(ttfb, 0.5) - pct(direct_ttfb, 0.5):>+10.1f}"
            f"{pct(ttfb, 0.99) - pct(direct_ttfb, 0.99):>+10.1f}"
        )
    print()
    print(f"CPU during the {window:.1f} s of load (cores = CPU seconds / wall seconds):")
    gone = [pid for pid in cpu0 if cpu1.get(pid, 0.0) == 0.0]  # ended and reaped
    cpu = {pid: cpu1[pid] - cpu0.get(pid, 0.0) for pid in cpu1 if pid not in gone}
    gw_cpu = cpu[gw]
    app_cpu = sum(v for pid, v in cpu.items() if pid != gw) + reaped - sum(cpu0[p] for p in gone)
    client_cpu = [r.cpu_s for r in results]
    print(f"  {'gateway (python -m codexpool serve)':<40}{gw_cpu / window:>6.2f} cores")
    print(f"  {'app-server (' + version + ')':<40}{app_cpu / window:>6.2f} cores")
    for i, c in enumerate(client_cpu):
        print(f"  {f'load client process {i}':<40}{c / window:>6.2f} cores")
    print(f"  {'this script (sampling, fake backend)':<40}{own_cpu / window:>6.2f} cores")
    used = (gw_cpu + app_cpu + sum(client_cpu) + own_cpu) / window
    print(
        f"  {'total':<40}{used:>6.2f} of {os.cpu_count()} cores "
        f"(gateway CPU per ok request: {gw_cpu / max(ok, 1) * 1000:.2f} ms)"
    )
    print(f"  {'kernel interrupts (loopback networking)':<40}{irq / window:>6.2f} cores")
    others = busy - irq - used * window
    print(
        f"  {'other processes on the machine':<40}{others / window:>6.2f} cores"
        + ("   <- disturbed: another workload ran meanwhile" if others / window > 0.1 else "")
    )
    print()
    # Gateway CPU per request between samples: state that piles up makes it creep upwards.
    print(
        f"{'RSS (MiB)':<28}{'requests':>10}{'gateway':>10}{'app-server':>12}{'gw CPU ms/req':>16}"
    )
    for prev, s in zip([None, *samples], samples, strict=False):
        per_req = ""
        if prev is not None and s.requests > prev.requests:
            ms = (s.gateway_cpu_s - prev.gateway_cpu_s) / (s.requests - prev.requests) * 1000
            per_req = f"{ms:.2f}"
        print(
            f"{s.label:<28}{s.requests:>10}{s.gateway_kib / 1024:>10.1f}"
            f"{s.children_kib / 1024:>12.1f}{per_req:>16}"
        )
    before, after = samples[0], samples[-1]
    loaded = [s for s in samples if s.label.startswith("under load")]
    print(
        f"growth idle-to-idle over {after.requests} requests: gateway "
        f"{(after.gateway_kib - before.gateway_kib) / 1024:+.1f} MiB, app-server "
        f"{(after.children_kib - before.children_kib) / 1024:+.1f} MiB"
    )
    # Python's allocator grows to the high-water mark of 200 requests in flight early on; a
    # leak keeps growing after that, so the second half of the load is the telling span.
    spans = [(loaded[0], loaded[-1])] if len(loaded) >= 2 else []
    if len(loaded) >= 3:
        spans.append((loaded[len(loaded) // 2], loaded[-1]))
    for a, b in spans:
        print(
            f"growth under load from {a.requests} to {b.requests} requests: gateway "
            f"{(b.gateway_kib - a.gateway_kib) / 1024:+.1f} MiB, app-server "
            f"{(b.children_kib - a.children_kib) / 1024:+.1f} MiB"
        )
    print()
    logged_ok = sum(1 for (status,) in rows if status == 200)
    expected_rows = warm + made
    lost = len(rows) != expected_rows or logged_ok != warm + ok
    print(
        f"request log: {len(rows)} rows ({logged_ok} with status 200) for {expected_rows} "
        f"requests made ({warm} warm-up + {made} load): "
        + ("MISMATCH" if lost else "one row per request, nothing lost")
    )
    print(f"gateway exit code after SIGTERM: {code}")
    failed = bool(errors) or lost or code != 0 or bool(pending) or ok == 0
    print("RESULT: " + ("FAIL" if failed else "ok"))
    summary = {
        "ok": not failed,
        "clients": args.clients,
        "procs": procs,
        "seconds": elapsed,
        "requests": made,
        "completed": ok,
        "errors": dict(errors),
        "requests_per_s": ok / elapsed,
        "ttft_ms": {"p50": pct(ttfb, 0.5), "p99": pct(ttfb, 0.99)},
        "direct_ttft_ms": {"p50": pct(direct_ttfb, 0.5), "p99": pct(direct_ttfb, 0.99)},
        "cpu_cores": {
            "gateway": gw_cpu / window,
            "app_server": app_cpu / window,
            "others": others / window,
        },
        "rss_kib": [dataclasses.asdict(s) for s in samples],
        "log_rows": len(rows),
        "log_rows_ok": logged_ok,
        "warmup": warm,
        "gateway_exit": code,
    }
    if failed or args.keep_data:
        print(f"data kept in {work} (data/server.log, the SQLite request log)")
    else:  # a 60 s run leaves a ~10 MB database behind
        shutil.rmtree(work, ignore_errors=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent streaming clients")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to keep the load")
    parser.add_argument(
        "--requests", type=int, default=0, help="stop after this many requests (0: no cap)"
    )
    parser.add_argument("--procs", type=int, default=1, help="client processes sharing the clients")
    parser.add_argument(
        "--real-codex",
        action="store_true",
        help="the real codex binary against the fake backend instead of the instant fake",
    )
    parser.add_argument(
        "--delta-ms", type=int, default=0, help="ms between the fake's text deltas (0: instant)"
    )
    parser.add_argument(
        "--direct-seconds",
        type=float,
        default=15.0,
        help="seconds of driving the app-server directly for the comparison (0: skip)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, s")
    parser.add_argument("--warmup", type=int, default=20, help="requests before measuring")
    parser.add_argument(
        "--sample-every", type=float, default=10.0, help="seconds between RSS samples"
    )
    parser.add_argument(
        "--settle", type=float, default=1.0, help="idle seconds before the idle RSS readings"
    )
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the gateway's data folder (kept on failure)"
    )
    parser.add_argument("--json-out", help="also write the figures as JSON to this file")
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients and --seconds must be positive")
    summary = run_loop(run_load(args))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2))
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
