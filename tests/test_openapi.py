"""The OpenAPI document stays true to the router and to the OpenAPI 3.1 meta-schema.

Two route kinds are left out of the comparison on purpose:
- HEAD: aiohttp registers a HEAD twin for every GET automatically (same handler, no body);
  listing each twin would double the document without saying anything new.
- the static file tree (`/static/...`): a file server over `web/`, not an API; its "routes" are
  whatever files exist.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
from aiohttp import web
from schemathesis.specs.openapi.definitions import OPENAPI_31

from codexpool.config import Settings
from codexpool.openapi import openapi_document

METHODS = ("get", "post", "put", "patch", "delete", "options", "head")


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


def registered(app: web.Application) -> set[tuple[str, str]]:
    return {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and not isinstance(r.resource, web.StaticResource)
    }


def test_document_and_router_agree(settings: Settings) -> None:
    from codexpool.app import create_app

    app = create_app(settings)
    doc, routes = documented(openapi_document()), registered(app)
    assert doc - routes == set(), "documented but not routed"
    assert routes - doc == set(), "routed but not documented"


def test_router_comparison_sees_every_kind_of_route(settings: Settings) -> None:
    """Guard the guard: the comparison covers admin, portal, OpenAI, ops and page routes."""
    from codexpool.app import create_app

    routes = registered(create_app(settings))
    for probe in (
        ("POST", "/api/auth/login"),
        ("GET", "/api/admin/usage"),
        ("POST", "/api/openai/pool/opt-in"),
        ("POST", "/api/openai/v1/chat/completions"),
        ("GET", "/metrics"),
        ("GET", "/api/openapi.json"),
        ("GET", "/openai"),
    ):
        assert probe in routes


def test_document_is_valid_openapi_31() -> None:
    validator = jsonschema_rs.Draft202012Validator(OPENAPI_31)
    errors = [str(e) for e in validator.iter_errors(openapi_document())]
    assert errors == []


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_ref_resolves_and_every_operation_names_security_and_errors() -> None:
    doc = openapi_document()
    for ref in _refs(doc):
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref
    schemes = set(doc["components"]["securitySchemes"])
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "security" in op, (method, path)
            for requirement in op["security"]:
                assert set(requirement) <= schemes, (method, path)
            assert op["responses"]["default"] == {"$ref": "#/components/responses/Error"}


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def test_only_the_key_limits_body_rejects_unknown_fields() -> None:
    """Handlers ignore unknown body fields, except key-limits (a typo would lift a limit);
    the document says exactly that."""
    doc = openapi_document()
    bodies = {
        path: _resolve(doc, op["requestBody"]["content"]["application/json"]["schema"])
        for path, item in doc["paths"].items()
        for op in item.values()
        if "requestBody" in op
    }
    closed = {path for path, body in bodies.items() if body.get("additionalProperties") is False}
    assert closed == {"/api/admin/openai-users/key-limits"}
    assert "/api/openai/v1/chat/completions" in bodies  # the comparison sees the bodies
    nested = [
        name
        for name, schema in doc["components"]["schemas"].items()
        if '"additionalProperties": false' in json.dumps(schema)
    ]
    assert nested == ["KeyLimitsChange"]


async def test_key_limits_really_rejects_unknown_fields(client: Any) -> None:
    """The claim above, checked against the handler (and its opposite for another route)."""
    from .users_helpers import admin_login, assert_openai_error, call

    admin = await admin_login(client)
    resp = await call(
        client, "POST", "/api/admin/openai-users/key-limits", admin, json={"master": True, "x": 1}
    )
    err = await assert_openai_error(resp, 400, "invalid_request")
    assert err["param"] == "x"
    resp = await call(
        client, "POST", "/api/admin/openai-users/rotate-master-key", admin, json={"x": 1}
    )
    assert resp.status == 200


async def test_served_without_auth(client: Any) -> None:
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == openapi_document()
