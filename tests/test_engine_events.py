"""The engine's event stream, driven against a real subprocess speaking the app-server
protocol (codexpool/testing/fake_codex.py): what a streaming consumer may rely on."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from codexpool.codex.engine import Engine, EngineConfig, ThreadSlot, TurnRequest
from codexpool.codex.events import CaughtUp, TextDelta, TurnDone, TurnError, Usage

from .conftest import proc_table

FAKE_CODEX = str(Path(__file__).resolve().parent.parent / "codexpool/testing/fake_codex.py")
REPLY = ["Hello", " from", " the fake", " app-server."]  # what fake_codex streams


async def _events(tmp_path: Path, delay_ms: int) -> list[object]:
    config = EngineConfig(
        codex_bin=FAKE_CODEX,
        extra_env={"FAKE_CODEX_DELAY_MS": str(delay_ms)},
        scratch_root=tmp_path / "scratch",
    )
    home = tmp_path / "home"
    home.mkdir()
    async with Engine(config) as engine:
        return [e async for e in engine.run_turn("a", home, TurnRequest(prompt="hi"))]


async def test_spaced_deltas_are_each_followed_by_caught_up(tmp_path: Path) -> None:
    """Deltas 50 ms apart: the consumer is told after each one that nothing else is waiting,
    so a buffered delta is written before the engine waits for the next (streaming stays
    streaming)."""
    events = await _events(tmp_path, 50)
    texts = [type(e).__name__ if not isinstance(e, TextDelta) else e.text for e in events]
    spaced = [x for piece in REPLY[:-1] for x in (piece, "CaughtUp")]
    assert texts[: len(spaced) + 1] == [*spaced, REPLY[-1]]  # the last comes with the usage
    assert isinstance(events[-1], TurnDone) and any(isinstance(e, Usage) for e in events)


async def test_caught_up_only_after_something_new(tmp_path: Path) -> None:
    """However the deltas arrive (here all at once), CaughtUp never comes first and never
    twice in a row: it marks new output, not every wake-up."""
    events = await _events(tmp_path, 0)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "".join(REPLY)
    kinds = [type(e) for e in events]
    assert kinds[0] is not CaughtUp
    assert all(not (a is CaughtUp and b is CaughtUp) for a, b in itertools.pairwise(kinds))
    assert kinds.count(CaughtUp) <= kinds.count(TextDelta)
    assert kinds[-1] is TurnDone


async def _until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def _text(engine: Engine, home: Path) -> str:
    events = [e async for e in engine.run_turn("a", home, TurnRequest(prompt="hi"))]
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_app_server_is_recycled_without_cutting_running_turns(tmp_path: Path) -> None:
    """Codex keeps every finished chat thread in memory, so once an app-server's RSS reached
    `recycle_above_mib` the engine starts a fresh one beside it. Turns already running on the
    old one finish there; then it ends."""
    config = EngineConfig(
        codex_bin=FAKE_CODEX,
        extra_env={"FAKE_CODEX_DELAY_MS": "600"},  # a turn takes ~2.4 s: slow enough under load
        scratch_root=tmp_path / "scratch",
        recycle_above_mib=1,  # any process is past it: recycle at the first reading
        recycle_check_every=2,
    )
    home = tmp_path / "home"
    home.mkdir()
    async with Engine(config) as engine:
        # Two turns at once: the second reaches the mark and the replacement starts meanwhile.
        running = [asyncio.create_task(_text(engine, home)) for _ in range(2)]
        await _until(lambda: engine.starts == 2 and engine.live_processes() == 2)
        assert not any(t.done() for t in running)  # the swap did not wait for them
        assert await asyncio.gather(*running) == ["".join(REPLY)] * 2
        await _until(lambda: engine.live_processes() == 1)  # the old one ended with them
        assert await _text(engine, home) == "".join(REPLY)  # served by the new one
        assert engine.starts == 2 and engine.recycles == 1
    assert engine.live_processes() == 0


def _child_pids() -> set[int]:
    """Live (non-zombie) children of this process."""
    me = os.getpid()
    return {pid for pid, _, state, parent, _ in proc_table() if parent == me and state != "Z"}


async def test_unlinking_while_a_replacement_starts_leaves_no_process(tmp_path: Path) -> None:
    """stop_account (unlink, idle, shutdown) during a recycle: the half-started replacement
    is ended too, and no codex process outlives the engine."""
    config = EngineConfig(
        codex_bin=FAKE_CODEX,
        extra_env={"FAKE_CODEX_START_MS": "400"},  # every app-server takes 0.4 s to start
        scratch_root=tmp_path / "scratch",
        recycle_above_mib=1,
        recycle_check_every=1,  # the first turn already starts a replacement
    )
    home = tmp_path / "home"
    home.mkdir()
    before = _child_pids()
    async with Engine(config) as engine:
        assert await _text(engine, home) == "".join(REPLY)
        assert engine.starts == 1 and engine.live_processes() == 1  # the replacement starts
        await engine.stop_account("a")
        await _until(lambda: engine.live_processes() == 0)
        assert await _text(engine, home) == "".join(REPLY)  # a fresh start still works
    await _until(lambda: _child_pids() <= before)


def _state_dirs(root: Path) -> list[Path]:
    """The per-process SQLite homes (not the spare)."""
    return sorted(p for p in root.iterdir() if not p.name.endswith(".spare"))


async def test_each_app_server_keeps_codex_state_in_a_directory_of_its_own(
    tmp_path: Path,
) -> None:
    """codex's SQLite databases live in a directory per app-server process, not in the
    account's CODEX_HOME. When the process ends (a recycle, stop_account, engine close) its
    ever-growing log database is deleted and the other databases wait as the account's spare
    for its next process. A log database an older gateway let codex write into CODEX_HOME is
    removed."""
    root = tmp_path / "codex-state"
    spare = root / "a.spare"
    config = EngineConfig(
        codex_bin=FAKE_CODEX,
        scratch_root=tmp_path / "scratch",
        state_root=root,
        recycle_above_mib=1,
        recycle_check_every=2,  # the second turn starts a replacement
    )
    home = tmp_path / "home"
    home.mkdir()
    for name in ("logs_2.sqlite", "logs_2.sqlite-wal"):
        (home / name).write_bytes(b"old rows with old prompts")
    async with Engine(config) as engine:
        assert await _text(engine, home) == "".join(REPLY)
        [first] = _state_dirs(root)
        assert {p.name for p in first.iterdir()} >= {"logs_2.sqlite", "state_5.sqlite"}
        assert not list(home.glob("*.sqlite*")), list(home.iterdir())
        assert await _text(engine, home) == "".join(REPLY)
        await _until(lambda: engine.recycles == 1 and engine.live_processes() == 1)
        await _until(lambda: len(_state_dirs(root)) == 1)  # the old process's was released
        [second] = _state_dirs(root)
        assert second != first and (second / "logs_2.sqlite").is_file()
        assert sorted(p.name for p in spare.iterdir()) == ["state_5.sqlite"]  # logs deleted
        (spare / "marker").write_text("kept")
        await engine.stop_account("a")
        assert _state_dirs(root) == []  # released; a spare was there already: removed
        assert await _text(engine, home) == "".join(REPLY)  # the next start takes the spare
        [third] = _state_dirs(root)
        assert (third / "marker").read_text() == "kept" and not spare.exists()
    assert _state_dirs(root) == [] and not list(spare.glob("logs_*"))
    assert not list(home.glob("*.sqlite*"))


async def test_state_left_by_a_dead_gateway_is_cleared_at_start(tmp_path: Path) -> None:
    """A gateway killed with SIGKILL cannot remove its processes' directories; the next start
    removes them, but not those of another gateway still running on the same data folder."""
    root = tmp_path / "codex-state"
    root.mkdir()
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()  # its pid now names no process
    dead = root / f"a.{gone.pid}.1"
    alive = root / f"a.{os.getppid()}.7"  # our parent: certainly running
    stray = root / "not-ours"
    spare = root / "a.spare"
    for path in (dead, alive, stray, spare):
        path.mkdir()
        (path / "state_5.sqlite").write_bytes(b"schema")
    config = EngineConfig(codex_bin=FAKE_CODEX, scratch_root=tmp_path / "scratch", state_root=root)
    async with Engine(config):
        assert sorted(root.iterdir()) == [alive, spare]


async def test_a_state_directory_that_cannot_be_made_is_a_clean_turn_error(
    tmp_path: Path,
) -> None:
    """A data disk where codex's state directory cannot be created (here a file is in the
    way) fails the turn as `crashed` (a 502 for the client), not with an unexpected error,
    and the engine still starts."""
    blocked = tmp_path / "codex-state"
    blocked.write_text("not a directory")
    config = EngineConfig(
        codex_bin=FAKE_CODEX, scratch_root=tmp_path / "scratch", state_root=blocked
    )
    home = tmp_path / "home"
    home.mkdir()
    async with Engine(config) as engine:
        with pytest.raises(TurnError) as failed:
            await _text(engine, home)
        assert failed.value.kind == "crashed" and "state directory" in failed.value.message
        assert engine.live_processes() == 0


async def test_an_app_server_keeping_a_conversation_thread_is_not_stopped_for_idleness(
    tmp_path: Path,
) -> None:
    """A kept thread keeps its app-server past appServerIdleSeconds (its conversation would
    lose its thread and cache key); once the thread is released the idle stop applies."""
    config = EngineConfig(codex_bin=FAKE_CODEX, idle_shutdown_s=1, scratch_root=tmp_path / "s")
    home = tmp_path / "home"
    home.mkdir()
    async with Engine(config) as engine:
        slot = ThreadSlot()
        events = [e async for e in engine.run_turn("a", home, TurnRequest("hi", thread=slot))]
        assert isinstance(events[-1], TurnDone) and slot.thread_id is not None
        assert engine.kept_threads("a") == 1
        await asyncio.sleep(2.5)  # past the idle time, two reaper rounds
        assert engine.live_processes() == 1
        await engine.release_thread("a", slot.thread_id)
        assert engine.kept_threads("a") == 0
        for _ in range(40):
            if engine.live_processes() == 0:
                break
            await asyncio.sleep(0.1)
        assert engine.live_processes() == 0
