"""Device-login flows visible and controllable from every node (sharedState).

A flow is a `codex login` process, so it runs on the node that started it; what the portal
sees of it lives in `device_flows`, one row per user naming that node. The running node
publishes its flow's status there (PUBLISH_S), and ends its flow when the row stops naming it:
another node started a new flow for the user (one flow per user, as on one node), or asked
for a cancel, or the row was deleted (unlink, user deleted). A node without the flow answers
status from the row, so a portal page whose requests land on any node follows the flow.
`maxDeviceLogins` bounds the codex processes of each node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from .device_login import TERMINAL_STATES, DeviceLogins
from .store import Store

_LOGGER = logging.getLogger(__name__)

PUBLISH_S = 0.5
CANCEL_WAIT_S = 3.0  # how long a cancel for another node's flow waits to see it end


class SharedDeviceLogins(DeviceLogins):
    """Device logins whose status and control go through the database."""

    node_id: str = ""
    _published: dict[int, str]  # user id -> the status JSON this node last wrote

    def attach(self, node_id: str) -> None:
        """Name this node (its rows in device_flows)."""
        self.node_id = node_id
        self._published = {}

    @property
    def store(self) -> Store:
        return self._store

    async def current(self, user_id: int) -> dict[str, Any]:
        """Return the user's flow status: this node's flow, or the one another node runs."""
        if user_id in self._flows:
            return self.status(user_id)
        row = await self.store.fetchone(
            "SELECT status FROM device_flows WHERE user_id = ?", (user_id,)
        )
        local = self.status(user_id)
        if row is None:
            return local
        status: dict[str, Any] = json.loads(row["status"])
        status["linked"] = bool(status.get("linked")) or local["linked"]
        return status

    async def start(self, user_id: int, username: str) -> dict[str, Any]:
        """Claim the user's row (ending a flow another node runs), then start here."""
        now = time.time()
        await self.store.execute(
            "INSERT INTO device_flows (user_id, node_id, status, cancel, updated_at) "
            "VALUES (?, ?, ?, 0, ?) ON CONFLICT (user_id) DO UPDATE SET "
            "node_id = excluded.node_id, status = excluded.status, cancel = 0, "
            "updated_at = excluded.updated_at",
            (user_id, self.node_id, json.dumps({"state": "starting", "linked": False}), now),
            bookkeeping=True,
        )
        self._published[user_id] = ""
        status = await super().start(user_id, username)
        await self.publish_one(user_id)
        return status

    async def cancel(self, user_id: int) -> dict[str, Any]:
        """Cancel the user's flow, here or on the node running it."""
        if user_id in self._flows:
            status = await super().cancel(user_id)
            await self.publish_one(user_id)
            return status
        await self.store.execute(
            "UPDATE device_flows SET cancel = 1 WHERE user_id = ?", (user_id,), bookkeeping=True
        )
        deadline = time.monotonic() + CANCEL_WAIT_S
        while True:
            status = await self.current(user_id)
            if status["state"] in TERMINAL_STATES or status["state"] in ("idle", "linked"):
                return status
            if time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.1)

    async def forget(self, user_id: int) -> None:
        """End the user's flow wherever it runs and drop its row (unlink, deletion)."""
        await super().forget(user_id)
        self._published.pop(user_id, None)
        with contextlib.suppress(Exception):  # the user row may be gone already (cascade)
            await self.store.execute(
                "DELETE FROM device_flows WHERE user_id = ?", (user_id,), bookkeeping=True
            )

    async def publish_one(self, user_id: int) -> None:
        """Write this node's flow status if it changed, or end the flow if the row says so."""
        flow = self._flows.get(user_id)
        if flow is None:
            return
        row = await self.store.fetchone(
            "SELECT node_id, cancel FROM device_flows WHERE user_id = ?", (user_id,)
        )
        gone = row is None and user_id in self._published  # deleted by another node
        if gone or (row is not None and (row["node_id"] != self.node_id or row["cancel"])):
            if flow.state not in TERMINAL_STATES:
                _LOGGER.info("Device login of user %s ended from another node", user_id)
                await DeviceLogins.cancel(self, user_id)
            if gone or (row is not None and row["node_id"] != self.node_id):
                self._flows.pop(user_id, None)  # the row (another node's flow) is the truth
                self._published.pop(user_id, None)
                return
        status = json.dumps(self.status(user_id))
        if self._published.get(user_id) == status:
            return
        await self.store.execute(
            "UPDATE device_flows SET status = ?, cancel = 0, updated_at = ? "
            "WHERE user_id = ? AND node_id = ?",
            (status, time.time(), user_id, self.node_id),
            bookkeeping=True,
        )
        self._published[user_id] = status

    async def run_publisher(self) -> None:
        """Publish every flow of this node every PUBLISH_S until cancelled."""
        while True:
            await asyncio.sleep(PUBLISH_S)
            for user_id in list(self._flows):
                try:
                    await self.publish_one(user_id)
                except Exception as exc:  # the database away: next round
                    _LOGGER.debug("Cannot publish device login of %s: %s", user_id, exc)
