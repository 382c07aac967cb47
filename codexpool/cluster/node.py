"""One gateway node of a cluster: registers itself, leases accounts, keeps their logins in sync.

Every tick (a fifth of `clusterLeaseSeconds`) the node
- refreshes its heartbeat in the registry and renews all of its leases in one statement;
- reads the registry, the leases and the stored logins' digests (three small queries);
- drops an account it no longer owns or whose login was unlinked elsewhere, rewrites one
  relinked elsewhere, takes free accounts up to its fair share (accounts / live nodes) and,
  when a node joined, hands one idle surplus account over per tick.

Only the owner holds an account's auth.json in its Codex home and runs its app-server. A node
whose renewals fail stops an account's codex processes once its last renewal is older than
`STOP_FRACTION` of the lease: well before the lease can expire, and another node takes it only
`MARGIN_FRACTION` of a lease after expiry, so no two nodes ever use one refresh token.

A second loop watches the owned homes' auth.json every `SYNC_INTERVAL_S` and writes codex's
token refreshes back to the database.

Requests read this node's in-memory picture (`owner_of`, `available`): the hot path does no
database work for routing. A node whose database stopped answering refuses new work after
`REFUSE_FRACTION` of a lease; streams already running go on until the account must stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import linking
from ..config import Settings
from ..security import KeyCipher
from ..store import Store
from . import leases, logins

_LOGGER = logging.getLogger(__name__)

SYNC_INTERVAL_S = 0.25  # how often owned auth.json files are checked for codex's changes
REFUSE_FRACTION = 0.45  # take no new work when the database answered longer ago than this
STOP_FRACTION = 0.6  # stop an account when its last renewal is older than this part of a lease
MARGIN_FRACTION = 0.5  # an expired lease is taken only this part of a lease after expiry
DEAD_NODE_LEASES = 20  # registry rows of nodes silent for this many leases are removed

StopAccount = Callable[[str], Awaitable[None]]


@dataclass
class Owned:
    """An account this node holds: what it wrote into the home, and when it last renewed."""

    digest: str  # of the auth.json version the database and the home agree on
    ident: tuple[int, int, int]  # the file's (mtime_ns, size, inode) when that was true
    renewed_at: float  # monotonic time of the last successful renewal


@dataclass(frozen=True)
class PeerNode:
    """Another node as this one sees it."""

    id: str
    url: str
    heartbeat_age_s: float
    live: bool


@dataclass
class Picture:
    """The cluster as the last successful tick read it (what requests route by)."""

    nodes: dict[str, leases.NodeRow] = field(default_factory=dict)
    leases: dict[int, leases.LeaseRow] = field(default_factory=dict)
    logins: dict[int, str] = field(default_factory=dict)  # account -> login digest
    read_at: float = 0.0  # wall time


def _ident(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def spread_order(node_id: str, user_id: int) -> str:
    """Order free accounts differently on each node, so nodes starting together take
    different accounts instead of racing for the same ones."""
    return hashlib.sha256(f"{node_id}/{user_id}".encode()).hexdigest()


class ClusterNode:
    """This node's membership: registry row, leases, login sync and the routing picture."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        cipher: KeyCipher,
        stop_account: StopAccount,
        busy: Callable[[str], int],
        on_change: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.store = store
        self.cipher = cipher
        self.node_id = settings.node_name
        self.url = settings.node_address
        self.lease_s = float(settings.cluster_lease_seconds)
        self.tick_s = max(0.2, self.lease_s / 5)
        self.margin_s = self.lease_s * MARGIN_FRACTION
        self._stop_account = stop_account
        self._busy = busy
        self._on_change = on_change  # the pool's index must see a login come or go
        self.started_at = time.time()
        self.owned: dict[int, Owned] = {}
        self.picture = Picture()
        self.db_ok_at = -math.inf  # monotonic time of the last tick that reached the database
        self.db_error: str | None = None
        self.lock = asyncio.Lock()  # one change of ownership at a time
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifetime ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Adopt local logins the database lacks, clear the others, take a first share."""
        await self._adopt_local_logins()
        try:
            await self.tick()
        except Exception as exc:  # the loop keeps trying; requests get 503 meanwhile
            _LOGGER.error("Cluster node %s cannot reach the database: %s", self.node_id, exc)
        self._tasks = [
            asyncio.create_task(self._run_ticks(), name="cluster-leases"),
            asyncio.create_task(self._run_sync(), name="cluster-login-sync"),
        ]

    async def close(self) -> None:
        """Stop the loops, hand every account back (processes first) and leave the registry."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        async with self.lock:
            for user_id in list(self.owned):
                with contextlib.suppress(Exception):
                    await self.drop(user_id, release=True)
        with contextlib.suppress(Exception):
            await leases.forget_node(self.store, self.node_id)

    # --- what requests read ----------------------------------------------------------------
    def available(self) -> bool:
        """Tell whether the database answered recently enough to take new work: refused once
        a tick failed and the last good one is `REFUSE_FRACTION` of a lease old, or once the
        last good one is `STOP_FRACTION` old whatever (a tick that hangs)."""
        age = time.monotonic() - self.db_ok_at
        limit = REFUSE_FRACTION if self.db_error is not None else STOP_FRACTION
        return age < self.lease_s * limit

    def owns(self, user_id: int) -> bool:
        """Tell whether this node holds the account (its login is in the local home)."""
        return user_id in self.owned

    def owner_of(self, user_id: int) -> PeerNode | None:
        """Return the live node that owns an account, or None (no owner right now)."""
        lease = self.picture.leases.get(user_id)
        if lease is None or lease.expires_at < time.time():
            return None
        return self._peer(lease.node_id)

    def has_login(self, user_id: int) -> bool:
        """Tell whether the database holds a login for this account (as last read)."""
        return user_id in self.picture.logins

    def _peer(self, node_id: str) -> PeerNode | None:
        row = self.picture.nodes.get(node_id)
        if row is None:
            return None
        age = time.time() - row.heartbeat_at
        return PeerNode(row.id, row.url, age, age < self.lease_s)

    def peers(self) -> list[PeerNode]:
        """Return the other live nodes."""
        out = []
        for node_id in self.picture.nodes:
            peer = self._peer(node_id)
            if peer is not None and peer.live and peer.id != self.node_id:
                out.append(peer)
        return out

    def describe(self) -> dict[str, Any]:
        """Return the nodes, the accounts each owns and lease ages (health, admin panel)."""
        now = time.time()
        by_node: dict[str, list[dict[str, Any]]] = {}
        for lease in self.picture.leases.values():
            by_node.setdefault(lease.node_id, []).append(
                {
                    "userId": lease.user_id,
                    "heldForS": round(now - lease.acquired_at, 1),
                    "expiresInS": round(lease.expires_at - now, 1),
                }
            )
        nodes = []
        for row in self.picture.nodes.values():
            age = now - row.heartbeat_at
            nodes.append(
                {
                    "id": row.id,
                    "url": row.url,
                    "self": row.id == self.node_id,
                    "live": age < self.lease_s,
                    "heartbeatAgeS": round(age, 1),
                    "startedAt": row.started_at,
                    "accounts": by_node.get(row.id, []),
                }
            )
        return {
            "nodeId": self.node_id,
            "leaseSeconds": self.lease_s,
            "database": "ok" if self.available() else "unavailable",
            "nodes": nodes,
        }

    # --- the tick ------------------------------------------------------------------------------
    async def _run_ticks(self) -> None:
        while True:
            # While the database is away, retry often: back within moments of its return.
            await asyncio.sleep(self.tick_s if self.db_error is None else min(self.tick_s / 4, 0.5))
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.db_error is None:
                    _LOGGER.error("Cluster node %s lost the database: %s", self.node_id, exc)
                self.db_error = str(exc) or type(exc).__name__

    async def tick(self) -> None:
        """Heartbeat, renew, read the picture, then reconcile what this node holds."""
        started = time.monotonic()
        now = time.time()
        await leases.heartbeat(
            self.store, self.node_id, self.url, self.started_at, now, now + self.lease_s
        )
        for owned in self.owned.values():
            owned.renewed_at = started  # the renewal counts from before it was sent
        picture = Picture(
            {n.id: n for n in await leases.nodes(self.store)},
            {lease.user_id: lease for lease in await leases.leases(self.store)},
            await logins.digests(self.store),
            now,
        )
        self.picture = picture
        self.db_ok_at = started
        if self.db_error is not None:
            _LOGGER.info("Cluster node %s reaches the database again", self.node_id)
            self.db_error = None
        async with self.lock:
            await self._reconcile(picture, now)
        if int(now) % 60 == 0:
            await leases.prune_nodes(self.store, now - DEAD_NODE_LEASES * self.lease_s)

    async def _reconcile(self, picture: Picture, now: float) -> None:
        for user_id in list(self.owned):
            lease = picture.leases.get(user_id)
            owned = self.owned.get(user_id)
            if owned is None:
                continue  # stopped meanwhile (its lease could not be renewed in time)
            if lease is None or lease.node_id != self.node_id:
                _LOGGER.warning("Account %s is no longer leased to this node", user_id)
                await self.drop(user_id, release=False)
            elif user_id not in picture.logins:
                await self.drop(user_id, release=True)  # unlinked on another node
            elif picture.logins[user_id] != owned.digest:
                await self._refresh_from_db(user_id)  # relinked on another node
        live = sum(1 for n in picture.nodes.values() if now - n.heartbeat_at < self.lease_s) or 1
        share = math.ceil(len(picture.logins) / live)
        free = [uid for uid in picture.logins if uid not in self.owned and self._free(uid, now)]
        free.sort(key=lambda uid: spread_order(self.node_id, uid))
        for user_id in free[: max(0, share - len(self.owned))]:
            await self._take(user_id, now)
        if len(self.owned) > share and live > 1:
            idle = [uid for uid in sorted(self.owned) if self._busy(str(uid)) == 0]
            if idle:  # one per tick: a joining node fills up gradually, no burst of restarts
                _LOGGER.info("Handing account %s over (fair share %s)", idle[-1], share)
                await self.drop(idle[-1], release=True)

    def _free(self, user_id: int, now: float) -> bool:
        """Tell whether this node may take the account: nobody holds it, its lease expired
        longer than the margin ago, or the row is this node's own from before a restart
        (node ids are unique: the default is host name and port)."""
        lease = self.picture.leases.get(user_id)
        return (
            lease is None or lease.expires_at < now - self.margin_s or lease.node_id == self.node_id
        )

    async def acquire_now(self, user_id: int) -> bool:
        """Take a free account at once (a request for it arrived and nobody owns it)."""
        async with self.lock:
            if user_id in self.owned:
                return True
            return await self._take(user_id, time.time())

    async def _take(self, user_id: int, now: float) -> bool:
        taken = await leases.acquire(
            self.store, user_id, self.node_id, now, now + self.lease_s, now - self.margin_s
        )
        if not taken:
            return False
        login = await logins.load(self.store, self.cipher, user_id)
        if login is None:  # unlinked meanwhile, or the key-encryption secret differs
            _LOGGER.error("Account %s has no readable login in the database", user_id)
            await leases.release(self.store, user_id, self.node_id)
            return False
        home = linking.codex_home(self.settings, user_id)
        await self._stop_account(str(user_id))  # nothing may run on an older copy
        await asyncio.to_thread(logins.write_file, home, login.data)
        self.owned[user_id] = Owned(
            login.digest, _ident(home / "auth.json") or (0, 0, 0), time.monotonic()
        )
        linking.forget(home)
        self._on_change()
        _LOGGER.info("Node %s owns account %s", self.node_id, user_id)
        return True

    async def _refresh_from_db(self, user_id: int) -> None:
        """Install a login linked on another node: the app-server restarts on the new one."""
        login = await logins.load(self.store, self.cipher, user_id)
        if login is None:
            return
        home = linking.codex_home(self.settings, user_id)
        await self._stop_account(str(user_id))
        await asyncio.to_thread(logins.write_file, home, login.data)
        self.owned[user_id] = Owned(
            login.digest, _ident(home / "auth.json") or (0, 0, 0), time.monotonic()
        )
        linking.forget(home)
        self._on_change()

    async def drop(self, user_id: int, *, release: bool) -> None:
        """Stop the account's codex processes, write its login back, remove it from the home,
        and (when asked) release the lease so another node may take it at once.

        The local copy goes whatever the database says: a node never keeps serving an
        account it let go of. A write-back or release that fails leaves the lease to expire.
        """
        owned = self.owned.pop(user_id, None)
        await self._stop_account(str(user_id))
        home = linking.codex_home(self.settings, user_id)
        try:
            if owned is not None and release:
                await self._write_back(user_id, owned)
        finally:
            with contextlib.suppress(OSError):
                (home / "auth.json").unlink()
            linking.forget(home)
            self._on_change()
        if release:
            await leases.release(self.store, user_id, self.node_id)
        _LOGGER.info("Node %s gave account %s up", self.node_id, user_id)

    async def _stop_unrenewed(self) -> None:
        """Stop accounts whose lease this node could not renew for too long (the database is
        unreachable or hangs): another node may take them once the lease expires.

        It takes no lock and touches no database, so a tick stuck in a database call cannot
        delay it: the account leaves `owned` first, then its processes stop and its login
        file goes (the database already holds it: changes are written back within a second).
        """
        deadline = time.monotonic() - self.lease_s * STOP_FRACTION
        for user_id, owned in list(self.owned.items()):
            if owned.renewed_at >= deadline or self.owned.get(user_id) is not owned:
                continue
            _LOGGER.error("Stopping account %s: its lease could not be renewed", user_id)
            del self.owned[user_id]
            await self._stop_account(str(user_id))
            home = linking.codex_home(self.settings, user_id)
            with contextlib.suppress(OSError):
                (home / "auth.json").unlink()
            linking.forget(home)
            self._on_change()

    # --- login write-back --------------------------------------------------------------------
    async def _run_sync(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            await self._stop_unrenewed()  # also while a tick hangs in the database
            for user_id, owned in list(self.owned.items()):
                try:
                    await self._write_back(user_id, owned)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # retried next round; the tick reports the outage
                    _LOGGER.debug("Writing back the login of %s failed: %s", user_id, exc)

    async def _write_back(self, user_id: int, owned: Owned) -> None:
        """Store the home's auth.json when codex changed it (token refresh)."""
        path = linking.codex_home(self.settings, user_id) / "auth.json"
        ident = _ident(path)
        if ident is None or ident == owned.ident:
            return
        data = await asyncio.to_thread(path.read_bytes)
        digest = logins.digest_of(data)
        if digest != owned.digest and logins.is_login(data):
            if await logins.save_if_owner(self.store, self.cipher, user_id, data, self.node_id):
                _LOGGER.info("Wrote account %s's refreshed login back", user_id)
            owned.digest = digest
        owned.ident = ident

    async def _adopt_local_logins(self) -> None:
        """Move logins linked before cluster mode (local files only) into the database, then
        clear every local copy: from now on only a lease owner holds one."""
        root = self.settings.codex_homes
        try:
            homes = [p for p in root.iterdir() if p.name.isdigit()]
        except OSError:
            return
        try:
            stored = await logins.digests(self.store)
            users = {int(r["id"]) for r in await self.store.fetchall("SELECT id FROM users")}
        except Exception as exc:
            _LOGGER.error("Cannot read stored logins: %s", exc)
            return
        for home in homes:
            user_id = int(home.name)
            data = logins.read_file(home)
            if data is None:
                continue
            if user_id not in stored and user_id in users and logins.is_login(data):
                await logins.save(self.store, self.cipher, user_id, data, self.node_id)
                _LOGGER.info("Stored account %s's local login in the database", user_id)
            with contextlib.suppress(OSError):
                (home / "auth.json").unlink()
            linking.forget(home)
