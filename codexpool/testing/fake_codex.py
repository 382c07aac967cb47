#!/usr/bin/env python3
"""A fake `codex app-server` that answers instantly in the real JSON-RPC shapes (stdlib only).

It exists to measure the gateway's own overhead: with the real binary, codex's CPU per turn
(~0.09 s) dominates every figure on a small machine. Only the messages the engine uses are
spoken; shapes follow what codex 0.169.0 sent in codex-protocol.md section 2.3.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPLY = ["Hello", " from", " the fake", " app-server."]
# Milliseconds between text deltas (env FAKE_CODEX_DELAY_MS): 0 answers instantly; a delay keeps
# many streams open at once, for steady-state measurements.
DELAY_S = float(os.environ.get("FAKE_CODEX_DELAY_MS", "0")) / 1000
# Milliseconds before the process answers anything (env FAKE_CODEX_START_MS): a slow start,
# for tests that act while an app-server is still starting.
START_S = float(os.environ.get("FAKE_CODEX_START_MS", "0")) / 1000


# Notification methods the client opted out of at initialize (as codex 0.169.0 honours them).
QUIET: set[str] = set()


def send(msg: dict[str, Any]) -> None:
    """Write one JSON-RPC line (nothing for a notification the client opted out of)."""
    if "id" not in msg and msg.get("method") in QUIET:
        return
    sys.stdout.write(json.dumps(msg, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def turn(rid: object, thread_id: str) -> None:
    """Answer turn/start and stream a whole turn."""
    turn_id = str(uuid.uuid4())
    send({"id": rid, "result": {"turn": {"id": turn_id, "status": "inProgress", "items": []}}})
    base = {"threadId": thread_id, "turnId": turn_id}
    send({"method": "turn/started", "params": {**base, "turn": {"id": turn_id}}})
    for piece in REPLY:
        if DELAY_S:
            await asyncio.sleep(DELAY_S)
        send(
            {
                "method": "item/agentMessage/delta",
                "params": {**base, "itemId": "msg_1", "delta": piece},
            }
        )
    usage = {
        "totalTokens": 16,
        "inputTokens": 11,
        "cachedInputTokens": 3,
        "outputTokens": 5,
        "reasoningOutputTokens": 0,
    }
    send(
        {
            "method": "thread/tokenUsage/updated",
            "params": {**base, "tokenUsage": {"total": usage, "last": usage}},
        }
    )
    send(
        {
            "method": "turn/completed",
            "params": {
                "threadId": thread_id,
                "turn": {"id": turn_id, "status": "completed", "error": None},
            },
        }
    )


def open_databases() -> None:
    """Create a log and a state database where codex 0.169.0 keeps them (CODEX_SQLITE_HOME,
    else CODEX_HOME), so tests can see where the gateway lets codex keep its state. Log rows
    are not written: the fake's CPU per turn should stay the gateway's to measure."""
    home = os.environ.get("CODEX_SQLITE_HOME") or os.environ.get("CODEX_HOME")
    if not home:
        return
    for name, table in (("logs_2.sqlite", "logs"), ("state_5.sqlite", "_sqlx_migrations")):
        db = sqlite3.connect(Path(home) / name)
        db.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, text TEXT)")
        db.commit()
        db.close()


async def serve() -> None:
    """Serve JSON-RPC on stdio until stdin closes; turns run concurrently."""
    open_databases()
    await asyncio.sleep(START_S)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()
    now = int(time.time())
    limits = {
        "limitId": "codex",
        "primary": {"usedPercent": 10, "windowDurationMins": 300, "resetsAt": now + 3600},
        "secondary": {"usedPercent": 5, "windowDurationMins": 10080, "resetsAt": now + 86400},
        "planType": "plus",
    }
    while line := await reader.readline():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        method, rid = msg.get("method"), msg.get("id")
        if rid is None:
            continue  # notifications (initialized) need no answer
        if method == "initialize":
            capabilities = (msg.get("params") or {}).get("capabilities") or {}
            QUIET.update(capabilities.get("optOutNotificationMethods") or ())
            send(
                {
                    "id": rid,
                    "result": {
                        "userAgent": "fake_codex/0.169.0",
                        "codexHome": "",
                        "platformFamily": "unix",
                        "platformOs": "linux",
                    },
                }
            )
        elif method == "thread/start":
            send({"id": rid, "result": {"thread": {"id": str(uuid.uuid4())}}})
        elif method == "turn/start":
            task = asyncio.create_task(turn(rid, msg["params"]["threadId"]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif method == "account/rateLimits/read":
            send({"id": rid, "result": {"rateLimits": limits}})
        elif method == "model/list":
            send({"id": rid, "result": {"data": []}})
        else:
            send({"id": rid, "result": {}})


if __name__ == "__main__":
    # Only `app-server [-c ...]` is spoken; anything else (e.g. `debug models`) is unsupported,
    # as with a codex too old for it, and the engine carries on without that feature.
    if "app-server" not in sys.argv[1:]:
        sys.exit(f"fake codex: only `app-server` is supported, not {sys.argv[1:]}")
    asyncio.run(serve())
