"""Cookie sessions for the admin panel and the portal (their CSRF guard is csrf.py).

One encrypted cookie (`codexpool_session`, aiohttp-session + Fernet) holds two independent
slots: `admin` and `portal`. Each route reads only its own slot, so an admin sign-in never
opens a portal route and a portal sign-in never opens an admin route, while one browser can
hold both at once. The cookie is HttpOnly, SameSite=Lax, Secure when the request came over TLS
(`X-Forwarded-Proto` only with `trustedProxy`) and lives 7 days.

Revocation, since the cookie itself lives on the client:
- portal: the slot carries the user's id, name, creation time and `session_epoch`; logout and
  deletion change the row, so every older cookie of that user stops matching;
- admin: the slot carries its sign-in time and a fingerprint of the admin credentials; an admin
  logout moves a "not before" mark (restored from the audit log at start-up) and a changed
  password changes the fingerprint.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp_session import AbstractStorage, Session, SessionData
from cryptography.fernet import Fernet, InvalidToken

from . import users
from .admin_auth import load_admin_auth
from .app_keys import ADMIN_AUTH, SETTINGS, STORE, THROTTLE
from .config import Settings
from .errors import ApiError
from .login_throttle import LoginThrottle, SharedLoginThrottle
from .netinfo import is_https
from .security import derive_fernet_key
from .users import User

_LOGGER = logging.getLogger(__name__)

COOKIE_NAME = "codexpool_session"
SESSION_MAX_AGE = 7 * 24 * 3600
ADMIN_SLOT = "admin"
PORTAL_SLOT = "portal"


def auth_required() -> ApiError:
    """Return the 401 every cookie-protected route answers without a valid session."""
    return ApiError(401, "Authentication required", "authentication_required")


class _Storage(AbstractStorage):
    """A Fernet-encrypted JSON cookie whose Secure flag follows the request's scheme.

    Built on aiohttp-session's public surface only (AbstractStorage's cookie settings and
    `load_cookie`, Session's constructor and mapping interface): its EncryptedCookieStorage
    cannot set the flag per request without its private attributes. The cookie holds what
    EncryptedCookieStorage writes (`{"created", "session"}` as JSON), so existing cookies stay
    valid.
    """

    def __init__(self, secret_key: bytes, trusted_proxy: bool) -> None:
        super().__init__(
            cookie_name=COOKIE_NAME, max_age=SESSION_MAX_AGE, httponly=True, samesite="Lax"
        )
        self._cookie_fernet = Fernet(secret_key)  # a urlsafe-base64 key, used as it is
        self._trusted_proxy = trusted_proxy

    async def load_session(self, request: web.Request) -> Session:
        """Return the cookie's session, or a new one when it is absent, expired or forged."""
        cookie = self.load_cookie(request)
        if cookie is not None:
            try:
                plain = self._cookie_fernet.decrypt(cookie.encode("utf-8"), ttl=self.max_age)
                data = json.loads(plain)
            except (InvalidToken, ValueError):
                _LOGGER.debug("Session cookie not readable (expired or forged); a new session")
            else:
                if isinstance(data, dict):  # what save_session wrote: {created, session}
                    return Session(
                        None, data=cast(SessionData, data), new=False, max_age=self.max_age
                    )
        return Session(None, data=None, new=True, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        """Write the session into the response, with `secure` set per request."""
        params = self.cookie_params.copy()
        params["secure"] = is_https(request, self._trusted_proxy) or None
        if session.empty:
            response.del_cookie(self.cookie_name, path=params["path"], domain=params["domain"])
            return
        data = json.dumps({"created": session.created, "session": dict(session)})
        params["max_age"] = session.max_age
        cookie = self._cookie_fernet.encrypt(data.encode("utf-8")).decode("utf-8")
        response.set_cookie(self.cookie_name, cookie, **params)


# aiohttp-session's own middleware keeps its state under string request keys, which aiohttp
# 3.14 warns about (NotAppKeyWarning); this small middleware drives the same storage with typed
# keys instead. Sessions change only through the helpers below, which set _CHANGED, so the
# middleware knows what to save without reading the Session's private state.
_STORAGE = web.RequestKey("session_storage", _Storage)
_SESSION = web.RequestKey("session", Session)
_CHANGED = web.RequestKey("session_changed", bool)


async def get_session(request: web.Request) -> Session:
    """Return this request's session, loading it from the cookie on first use (read it only:
    the helpers below change it)."""
    session = request.get(_SESSION)
    if session is None:
        session = await request[_STORAGE].load_session(request)
        request[_SESSION] = session
    return session


async def _set_slot(request: web.Request, slot: str, value: dict[str, Any]) -> None:
    (await get_session(request))[slot] = value
    request[_CHANGED] = True


async def _drop_slot(request: web.Request, slot: str) -> None:
    session = await get_session(request)
    if slot in session:
        del session[slot]
        request[_CHANGED] = True


def session_middleware(settings: Settings) -> Middleware:
    """Return the middleware that gives handlers the session cookie's storage and saves a
    changed session into the handler's response (create_app places it)."""
    storage = _Storage(
        derive_fernet_key(settings.session_secret, b"session-cookie"), settings.trusted_proxy
    )

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[_STORAGE] = storage
        response = await handler(request)
        session = request.get(_SESSION)
        # Streams are already on the wire; sessions only change in plain JSON handlers.
        if session is not None and request.get(_CHANGED) and not response.prepared:
            await storage.save_session(request, response, session)
        return response

    return middleware


# --- identities ---------------------------------------------------------------------------


async def require_admin(request: web.Request) -> str:
    """Return the admin username of this request's session or raise the 401."""
    auth = request.app[ADMIN_AUTH]
    session = await get_session(request)
    slot = session.get(ADMIN_SLOT)
    if (
        not isinstance(slot, dict)
        or slot.get("f") != auth.fingerprint
        or not isinstance(slot.get("t"), (int, float))
        or slot["t"] < auth.not_before
    ):
        raise auth_required()
    return auth.username


async def start_admin_session(request: web.Request) -> None:
    """Put the admin identity into this request's session cookie."""
    auth = request.app[ADMIN_AUTH]
    await _set_slot(request, ADMIN_SLOT, {"f": auth.fingerprint, "t": time.time()})


async def end_admin_session(request: web.Request, everywhere: bool = True) -> None:
    """Drop the admin slot; `everywhere` also voids every admin cookie issued so far."""
    if everywhere:
        request.app[ADMIN_AUTH].not_before = time.time()
    await _drop_slot(request, ADMIN_SLOT)


async def portal_user_or_none(request: web.Request) -> User | None:
    """Return the portal user of this session if it is still valid, else None."""
    session = await get_session(request)
    slot = session.get(PORTAL_SLOT)
    if not isinstance(slot, dict) or not isinstance(slot.get("id"), int):
        return None
    user = await users.get_user_by_id(request.app[STORE], slot["id"])
    # Name and creation time guard against a deleted user's id being reused by a new row.
    if (
        user is None
        or user.disabled
        or user.username != slot.get("u")
        or user.created_at != slot.get("c")
        or user.session_epoch != slot.get("e")
    ):
        return None
    return user


async def require_portal_user(request: web.Request) -> User:
    """Return the signed-in portal user or raise the 401."""
    user = await portal_user_or_none(request)
    if user is None:
        raise auth_required()
    return user


async def start_portal_session(request: web.Request, user: User) -> None:
    """Put a portal identity (bound to the user's current epoch) into the session cookie."""
    slot = {"id": user.id, "u": user.username, "c": user.created_at, "e": user.session_epoch}
    await _set_slot(request, PORTAL_SLOT, slot)


async def end_portal_session(request: web.Request) -> None:
    """Drop the portal slot of this cookie."""
    await _drop_slot(request, PORTAL_SLOT)


# --- wiring -------------------------------------------------------------------------------


async def _admin_auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """Load the admin credentials once the store is open; build the sign-in throttle (in the
    database with sharedState, so guesses spread over nodes count together)."""
    app[ADMIN_AUTH] = await load_admin_auth(app[SETTINGS], app[STORE])
    shared = app[SETTINGS].shares_state
    app[THROTTLE] = SharedLoginThrottle(app[STORE]) if shared else LoginThrottle()
    yield


def setup(app: web.Application) -> None:
    """Install the admin credentials context, which also builds the sign-in throttle.

    Call after the store's cleanup context is registered (the middleware is in create_app's
    list).
    """
    app.cleanup_ctx.append(_admin_auth_ctx)
