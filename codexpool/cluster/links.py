"""Linking and unlinking in cluster mode: the database copy is what counts, from any node.

A device login finishes on whichever node ran it: its auth.json is stored in the database and
the local copy stays only when this node owns the account (else the owner, or the next node
to take the account, writes it). Unlinking removes the stored login; its owner stops the
account's app-server and removes its copy within a tick.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from .. import linking
from ..app_keys import CLUSTER, SETTINGS, STORE
from . import logins


def is_linked(app: web.Application, user_id: int) -> bool:
    """Tell whether the account has a login: in the database on a cluster, else on disk."""
    node = app.get(CLUSTER)
    if node is not None:
        return node.has_login(user_id)
    return linking.is_linked(linking.codex_home(app[SETTINGS], user_id))


async def publish_local_login(app: web.Application, user_id: int) -> None:
    """Store the login a device flow just wrote into this node's home (cluster mode)."""
    node = app.get(CLUSTER)
    if node is None:
        return
    home = linking.codex_home(app[SETTINGS], user_id)
    data = logins.read_file(home)
    if data is None or not logins.is_login(data):
        return
    digest = await logins.save(app[STORE], node.cipher, user_id, data, node.node_id)
    node.picture.logins[user_id] = digest
    if node.owns(user_id):
        node.owned[user_id].digest = digest  # the write-back loop takes the new file as known
        return
    with contextlib.suppress(OSError):
        await asyncio.to_thread((home / "auth.json").unlink)
    linking.forget(home)
    if node.owner_of(user_id) is None:
        await node.acquire_now(user_id)  # usable at once rather than at the next tick
    # else the owner sees the new digest at its next tick and restarts on the new login


async def unlink(app: web.Application, user_id: int) -> bool:
    """Remove an account's stored login (cluster mode); tell whether there was one."""
    node = app.get(CLUSTER)
    if node is None:
        return False
    removed = await logins.delete(app[STORE], user_id)
    node.picture.logins.pop(user_id, None)
    if node.owns(user_id):
        async with node.lock:
            await node.drop(user_id, release=True)
    return removed
