"""Helpers for the account HTTP tests: explicit cookies per identity, error-shape checks.

The test client runs with a dummy cookie jar so each test says exactly which identity (admin,
portal, none) a request carries.
"""

from __future__ import annotations

from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from codexpool import users
from codexpool.app_keys import STORE
from codexpool.security import hash_password
from codexpool.sessions import COOKIE_NAME

from .conftest import ADMIN_PASSWORD

USER_PASSWORD = "portal-password-1"


def cookie_header(cookie: str | None) -> dict[str, str]:
    """Return the Cookie header that carries this session value."""
    return {"Cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {}


def session_cookie(resp: ClientResponse) -> str:
    """Return the session cookie value a response set."""
    morsel = resp.cookies.get(COOKIE_NAME)
    assert morsel is not None and morsel.value, f"no session cookie in {resp.headers}"
    return morsel.value


async def assert_openai_error(resp: ClientResponse, status: int, code: str | None) -> dict:
    """Check an OpenAI-shaped error: status, JSON body with message/type/param/code."""
    assert resp.status == status, (resp.status, await resp.text())
    assert resp.content_type == "application/json"
    body = await resp.json()
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


async def call(
    client: TestClient,
    method: str,
    path: str,
    cookie: str | None = None,
    json: Any = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> ClientResponse:
    """Send one request with an explicit identity."""
    return await client.request(
        method, path, json=json, headers={**cookie_header(cookie), **(headers or {})}, **kwargs
    )


async def admin_login(client: TestClient) -> str:
    """Sign the admin in and return the cookie."""
    resp = await call(
        client, "POST", "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert resp.status == 200, await resp.text()
    return session_cookie(resp)


async def make_user(client: TestClient, name: str, password: str = USER_PASSWORD) -> None:
    """Create a portal user directly (cheap bcrypt) so tests do not pay 12 rounds each."""
    await users.create_user(client.app[STORE], name, hash_password(password, rounds=4))


async def portal_login(client: TestClient, name: str, password: str = USER_PASSWORD) -> str:
    """Sign a portal user in over HTTP and return the cookie."""
    resp = await call(
        client, "POST", "/api/openai/auth/login", json={"username": name, "password": password}
    )
    assert resp.status == 200, await resp.text()
    return session_cookie(resp)


async def new_portal_user(client: TestClient, name: str) -> str:
    """Create a user and return a signed-in portal cookie."""
    await make_user(client, name)
    return await portal_login(client, name)


async def rotate_user_key(client: TestClient, cookie: str, label: str | None = None) -> str:
    """Rotate the signed-in user's key and return it."""
    body = {} if label is None else {"label": label}
    resp = await call(client, "POST", "/api/openai/keys/rotate", cookie, json=body)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["key"]


async def models_status(client: TestClient, key: str) -> int:
    """Return the status of GET /v1/models with this key."""
    resp = await client.get("/api/openai/v1/models", headers={"Authorization": f"Bearer {key}"})
    return resp.status
