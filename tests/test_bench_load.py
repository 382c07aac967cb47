"""bench/load.py in miniature (5 clients for 2 s through the real server and the instant fake
app-server), so the load benchmark cannot rot unnoticed between the runs that feed
bench/README.md. Figures are not asserted (the machine is shared); correctness is: every
request answered completely, one request-log row each, RSS sampled, a clean exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# It starts the real server and client processes: the e2e part, though no codex binary is used.
pytestmark = pytest.mark.e2e


def test_load_bench_small_run(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "load.py"),
            "--clients", "5",
            "--seconds", "2",
            "--direct-seconds", "0.5",
            "--warmup", "5",
            "--sample-every", "0.5",
            "--procs", "2",
            "--settle", "0.2",
            "--json-out", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RESULT: ok" in proc.stdout
    summary = json.loads(out.read_text())
    assert summary["ok"] and summary["errors"] == {}
    assert summary["completed"] == summary["requests"] > 0
    assert summary["procs"] == 2
    assert summary["log_rows"] == summary["log_rows_ok"] == summary["warmup"] + summary["requests"]
    assert summary["ttft_ms"]["p50"] > 0 and summary["direct_ttft_ms"]["p50"] > 0
    labels = [s["label"] for s in summary["rss_kib"]]
    assert labels[0] == "idle after warm-up" and labels[-1] == "idle after load"
    assert any(label.startswith("under load") for label in labels)
    assert all(s["gateway_kib"] > 0 and s["children_kib"] > 0 for s in summary["rss_kib"])
    assert summary["gateway_exit"] == 0
