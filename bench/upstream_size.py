"""Upstream size: what one short chat request costs upstream in each instruction mode.

Sends a one-line chat request (with and without a system message) through the real gateway and
the real codex binary to the fake ChatGPT backend, and prints the `/responses` body codex sent:
its total size, the client's own text in it, the overhead beyond that, and each part (every
input item with its role, and the other top-level fields). Issue 16's target: in the `client`
mode a one-line request weighs at most 3 KB plus the client's own content.

    .venv/bin/python bench/upstream_size.py [--modes client,codex] [--models gpt-5.5,gpt-6.1-sol]
        [--system "..."] [--user Hi]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from benchlib import codex_version, run_loop, start_gateway

from codexpool.config import find_codex_bin
from codexpool.testing.fake_backend import FakeBackend, codex_overrides

TARGET_OVERHEAD = 3 * 1024


def size(value: Any) -> int:
    """Return the bytes a JSON value takes in compact encoding (a part's share of the body)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def label(item: dict[str, Any]) -> str:
    """Return a short description of one input item: role and the start of its text."""
    texts = [p.get("text", "") for p in item.get("content") or [] if isinstance(p, dict)]
    head = " ".join(" ".join(texts).split())[:48]
    return f"{item.get('type')}/{item.get('role', '-')}: {head!r}"


def report(mode: str, model: str, system: str | None, user: str, logged: dict[str, Any]) -> bool:
    """Print one logged request's breakdown; return whether it meets the overhead target."""
    body = logged["body"]
    total = logged.get("bytes") or size(body)
    own = len(user.encode()) + (len(system.encode()) if system else 0)
    overhead = total - own
    met = overhead <= TARGET_OVERHEAD
    verdict = f" (target <= {TARGET_OVERHEAD} B: {'met' if met else 'MISSED'})"
    print(
        f"\n{mode} mode, {model}, system message: {'yes' if system else 'none'} -> "
        f"{total} B upstream, client text {own} B, overhead {overhead} B"
        + (verdict if mode == "client" else "")
    )
    for item in body.get("input") or []:
        print(f"  input {size(item):>7} B  {label(item)}")
    for key, value in body.items():
        if key != "input":
            print(f"  field {size(value):>7} B  {key}")
    return overhead <= TARGET_OVERHEAD


async def chat(url: str, key: str, model: str, system: str | None, user: str) -> None:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}
    ]
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            url + "/chat/completions",
            json={"model": model, "messages": messages},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert resp.status == 200, await resp.text()


def measure(
    mode: str, models: list[str], codex_bin: str, fb: FakeBackend, system: str, user: str
) -> list[tuple[str, str | None, dict[str, Any]]]:
    """Run the request for each model, without and with a system message, through a gateway
    in `mode`; return (model, system, logged /responses request) of each."""
    with tempfile.TemporaryDirectory(prefix=f"codexpool-size-{mode}-") as tmp:
        server, key = start_gateway(
            Path(tmp), codex_bin, codex_overrides(fb.url), chatInstructions=mode
        )
        try:
            out = []
            for model in models:
                for sys_text in (None, system):
                    fb.clear()
                    run_loop(chat(server.api, key, model, sys_text, user))
                    [logged] = fb.requests("/codex/responses")
                    out.append((model, sys_text, logged))
            return out
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="client,codex")
    parser.add_argument("--models", default="gpt-5.5,gpt-6.1-sol")
    parser.add_argument("--system", default="You are a helpful assistant. Answer briefly.")
    parser.add_argument("--user", default="Hi! What is the capital of France?")
    args = parser.parse_args()
    codex_bin = find_codex_bin()
    if not codex_bin:
        raise SystemExit("codex binary not found (run .ci/run or install.sh)")
    print(f"codex: {asyncio.run(codex_version(codex_bin))}; user message: {args.user!r}")
    met = True
    with FakeBackend() as fb:
        for mode in args.modes.split(","):
            models = args.models.split(",")
            for model, system, logged in measure(
                mode, models, codex_bin, fb, args.system, args.user
            ):
                ok = report(mode, model, system, args.user, logged)
                met = met and (ok or mode != "client")
    print(f"\nclient mode target {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
