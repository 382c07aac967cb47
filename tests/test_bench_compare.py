"""bench/compare.py in miniature (one round, a few requests per level, both modes), so the
comparison with LiteLLM's proxy cannot rot between the runs that feed bench/README.md.

The first run installs LiteLLM from PyPI into the git-ignored bench/.peers/ (a minute or a
few; later runs reuse it); without network the test is skipped, saying so. Figures are not
asserted (the machine is shared); that every part ran and measured something is.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from codexpool.config import find_codex_bin
from tests.conftest import REPO

# It starts the real server, LiteLLM's and the fake upstreams: the e2e part (no codex binary
# needed except for the real-codex rows); `-m bench` selects the benchmark tests alone.
pytestmark = [pytest.mark.e2e, pytest.mark.bench]

EXIT_NO_PEER = 3  # bench/compare.py: the peer could not be installed


def test_compare_bench_small_run(tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "compare.py"),
            "--rounds", "1",
            "--levels", "1,3",
            "--waves", "2",
            "--steady-seconds", "0.5",
            "--delta-ms", "20",
            "--cpu-requests", "100",  # >= 60 ms of codexpool CPU: several 10 ms clock ticks
            "--cpu-streams", "2",
            "--real-levels", "1",
            "--real-waves", "1",
            "--json-out", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=1500,  # a first run installs LiteLLM (~1.5 min on this machine, more if busy)
    )  # fmt: skip
    if proc.returncode == EXIT_NO_PEER:
        pytest.skip(f"LiteLLM could not be installed (offline?): {proc.stderr[-600:]}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    figures = json.loads(out.read_text())

    assert set(figures["configs"]) == {"codexpool", "LiteLLM"}
    assert "--num_workers 1" in figures["configs"]["LiteLLM"]
    assert "callbacks off" in figures["configs"]["LiteLLM"]
    # Every mode and level measured on both sides, once (one round), with every request timed.
    for mode in ("waves", "steady"):
        assert set(figures["added_p50_ms"][mode]) == {"1", "3"}
        for level in ("1", "3"):
            for side in ("codexpool", "LiteLLM"):
                (added,) = figures["added_p50_ms"][mode][level][side]
                assert math.isfinite(added)
                (n,) = figures["gateway_requests"][mode][level][side]
                assert n == 2 * int(level) if mode == "waves" else n >= int(level)
    for side in ("codexpool", "LiteLLM"):
        (cpu,) = figures["cpu_ms_per_request"][side]
        (rss,) = figures["rss_mib"][side]
        assert cpu > 0 and rss > 10
    # Interleaved: each mode's round runs codexpool, then LiteLLM; load sampled around each.
    assert [(r["mode"], r["side"]) for r in figures["runs"]] == [
        ("waves", "codexpool"),
        ("waves", "LiteLLM"),
        ("steady", "codexpool"),
        ("steady", "LiteLLM"),
    ]
    assert all(len(r["loadavg"].split()) == 3 and r["other_cores"] >= 0 for r in figures["runs"])

    # The printed table: one row per mode and level, the CPU and RSS rows, the machine line.
    table = proc.stdout
    assert "gateway-added time to first content, p50 per run" in table
    assert "CPU ms per streamed request" in table and "RSS MiB after the requests" in table
    assert "1-min loadavg before each run" in table

    if find_codex_bin():
        real = figures["real_codex"]
        assert real["version"].startswith("codex-cli")
        (own,) = real["codex_own_p50_ms"]["1"]
        assert own > 0
        assert "codexpool-added p50" in table
    else:
        assert figures["real_codex"] is None
