"""This gateway node's name in the shared tables (slots, conversation threads)."""

from __future__ import annotations

import socket

from .config import Settings


def node_id(settings: Settings) -> str:
    """Return this node's id: host name and port, stable across its restarts so a restarted
    node can drop what its predecessor left behind."""
    return f"{socket.gethostname()}:{settings.port}"
