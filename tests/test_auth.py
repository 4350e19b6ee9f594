"""Every /v1 route against every scope: 401 without a valid key, 403 without the scope, through with it."""

from __future__ import annotations

import re

import msgspec
import pytest

from consent_svc.app import create_app
from consent_svc.auth import ADMIN, SCOPES

SAMPLE_UUID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def settings(settings):
    # Over plain http, as the test client speaks: Secure (production) CSRF cookies would not come back.
    return msgspec.structs.replace(settings, mode="local")


PUBLIC = "public"


def concrete(path: str) -> str:
    return re.sub(r"\{[^}:]+(:[a-z]+)?\}", lambda m: "1" if m.group(1) == ":int" else SAMPLE_UUID, path)


def v1_operations(settings) -> list[tuple[str, str, str]]:
    """(method, concrete path, scope or PUBLIC) for every handler under /v1."""
    operations = []
    for route in create_app(settings).routes:
        if not route.path.startswith("/v1"):
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods - {"HEAD", "OPTIONS"}):
                scope = PUBLIC if handler.opt.get("public") else handler.opt.get("scope")
                operations.append((method, concrete(route.path), scope))
    return operations


def test_every_v1_handler_declares_a_known_scope_or_says_it_is_public(settings):
    operations = v1_operations(settings)
    assert len(operations) >= 5
    assert all(scope in SCOPES or scope == PUBLIC for _, _, scope in operations), operations
    # the public key, and CMPs' messages (authenticated by their Standard Webhooks signature instead)
    assert sorted(path for _, path, scope in operations if scope == PUBLIC) == [
        "/v1/audit/public-key",
        f"/v1/inbound/{SAMPLE_UUID}",
    ]


async def test_scope_matrix(client, keys, settings):
    for method, path, needed in v1_operations(settings):
        anonymous = await client.request(method, path, json={})
        if needed == PUBLIC:
            expected = 401 if path.startswith("/v1/inbound/") else 200  # unsigned
            assert anonymous.status_code == expected, (method, path)
            continue
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.headers["content-type"].startswith("application/problem+json")
        forged = await client.request(
            method, path, json={}, headers={"Authorization": "Bearer csk_000000000000_nope"}
        )
        assert forged.status_code == 401, (method, path)
        for scope in SCOPES:
            response = await client.request(method, path, json={}, headers=await keys.of(scope))
            if scope in (needed, ADMIN):
                # A downstream system's confirmation also needs the key to be that system's: a 403 of its own.
                refused_as_scope = (
                    response.status_code == 403 and response.json()["title"] != "Not this system"
                )
                assert response.status_code != 401 and not refused_as_scope, (
                    method,
                    path,
                    scope,
                    response.text,
                )
            else:
                assert response.status_code == 403, (method, path, scope)
                assert response.json()["type"] == "/problems/forbidden"


async def test_options_answers_allowed_methods_without_a_key(client, settings):
    for method, path, _ in v1_operations(settings):
        response = await client.options(path)
        assert response.status_code == 204, (path, response.text)
        assert method in response.headers["allow"]


async def test_revoked_key_is_refused_on_the_next_request(client, keys, conn):
    from consent_svc.auth import revoke_key

    headers = await keys.of("consents:read")
    assert (await client.get("/v1/purposes", headers=headers)).status_code == 200
    key_id = headers["Authorization"].split("_")[1]
    assert await revoke_key(conn, key_id)
    assert (await client.get("/v1/purposes", headers=headers)).status_code == 401


async def test_keys_are_stored_only_as_hashes(keys, conn):
    headers = await keys.of("admin")
    secret = headers["Authorization"].split("_", 2)[2]  # csk_<id>_<secret>: the secret may hold "_"
    rows = await conn.fetch("SELECT * FROM api_keys")
    assert secret.encode() not in repr([dict(r) for r in rows]).encode()


@pytest.mark.parametrize("header", ["", "Basic abc", "Bearer", "Bearer csk_short_x", "Bearer " + "x" * 5000])
async def test_malformed_authorization_is_401(client, header):
    response = await client.get("/v1/purposes", headers={"Authorization": header})
    assert response.status_code == 401


async def test_public_routes_need_no_key(client):
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health/ready")).json()["status"] == "ok"
    schema = await client.get("/schema/openapi.json")
    assert schema.status_code == 200
    assert "/v1/consents" in schema.json()["paths"]
    assert schema.json()["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"


async def test_openapi_documents_problem_responses(client, settings):
    schema = (await client.get("/schema/openapi.json")).json()
    for method, path, scope in v1_operations(settings):
        if scope == PUBLIC:
            continue
        template = next(p for p in schema["paths"] if concrete(p.replace("{seq}", "{seq:int}")) == path)
        responses = schema["paths"][template][method.lower()]["responses"]
        for code in ("401", "403", "503"):
            assert "application/problem+json" in responses[code]["content"], (method, path, code)
        if "400" in responses:
            assert "application/problem+json" in responses["400"]["content"], (method, path)


async def test_openapi_promises_no_key_refusal_where_no_key_is_asked(client):
    """Operations without an API key never answer 401 or 403 for a key (the test below holds them to it), so
    their documentation says neither. The inbound webhook does refuse, for its signature, and says so."""
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    keyless = {
        (path, method): operation
        for path, operations in paths.items()
        for method, operation in operations.items()
        if operation.get("security") == [] or path.startswith("/public")
    }
    assert ("/public/requests", "post") in keyless and ("/v1/audit/public-key", "get") in keyless
    inbound = keyless.pop(("/v1/inbound/{source}", "post"))
    assert "signature" in inbound["responses"]["401"]["description"]
    assert "disabled" in inbound["responses"]["403"]["description"]
    for (path, method), operation in keyless.items():
        assert not {"401", "403"} & operation["responses"].keys(), (method, path)


async def test_openapi_request_body_is_the_full_record_type(client):
    schema = (await client.get("/schema/openapi.json")).json()
    body = schema["paths"]["/v1/consents"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ConsentBatch"}
    record = schema["components"]["schemas"]["ConsentRecordIn"]
    assert {"subject", "purpose", "status", "collected_at", "region", "source"} <= set(record["required"])


async def test_without_a_revocation_listener_keys_are_read_from_the_database(client, keys, conn):
    headers = await keys.of("consents:read")
    assert (await client.get("/v1/purposes", headers=headers)).status_code == 200
    import asyncio

    keyring = client.app.state.keyring
    # The listener's connection dies (as in a database restart): notifications may be missed from now on.
    await conn.execute("SELECT pg_terminate_backend($1)", keyring.listener.get_server_pid())
    for _ in range(100):
        if not keyring.listening:
            break
        await asyncio.sleep(0.02)
    assert not keyring.listening
    # Revoked behind the service's back (no NOTIFY): still refused, because nothing is served from memory now.
    await conn.execute("UPDATE api_keys SET revoked_at = now()")
    assert (await client.get("/v1/purposes", headers=headers)).status_code == 401


def every_operation(settings) -> list[tuple[str, str]]:
    """(method, concrete path) for every handler the app serves, /v1 or not."""
    return [
        (method, concrete(route.path))
        for route in create_app(settings).routes
        for handler in route.route_handlers
        for method in sorted(handler.http_methods - {"HEAD", "OPTIONS"})
    ]


# Who may reach what, outside /v1 (the scope matrix above): a closed list, so a new route must be placed in it.
OPEN_PREFIXES = ("/health", "/schema", "/static")  # no data behind them
PUBLIC_PREFIXES = ("/public", "/privacy")  # customers: no key, rate-limited, answers that enumerate no one
SIGN_IN = {("GET", "/console/login"), ("POST", "/console/login"), ("POST", "/console/logout")}


async def test_every_route_outside_v1_is_open_public_or_behind_a_console_session(client, keys, settings):
    console = []
    for method, path in every_operation(settings):
        if (
            path.startswith("/v1")
            or path.startswith(OPEN_PREFIXES + PUBLIC_PREFIXES)
            or (method, path) in SIGN_IN
        ):
            continue
        assert path.startswith("/console"), f"{method} {path} is in no access class: place it in this test"
        console.append((method, path))
    assert len(console) >= 10
    login = await client.get("/console/login")
    csrf = re.search(r'name="_csrf_token" value="([^"]+)"', login.text).group(1)
    admin_key = await keys.of(ADMIN)
    for method, path in console:
        # No session: back to sign-in, even with a valid CSRF token, and even with an admin API key (the console
        # is for people; keys are for programs).
        for headers in ({}, admin_key):
            response = await client.request(
                method,
                path,
                data={"_csrf_token": csrf} if method == "POST" else None,
                headers=headers,
                follow_redirects=False,
            )
            assert response.status_code == 303 and response.headers["location"] == "/console/login", (
                method,
                path,
                response.status_code,
            )
        if method == "POST":
            # And no form is taken without its CSRF token, session or not.
            refused = await client.request(method, path, data={}, follow_redirects=False)
            assert refused.status_code == 403, (method, path)


async def test_public_and_open_routes_answer_without_a_key_and_never_with_a_server_error(client, settings):
    for method, path in every_operation(settings):
        if not path.startswith(OPEN_PREFIXES + PUBLIC_PREFIXES):
            continue
        page = await client.get("/privacy")
        csrf = re.search(r'name="_csrf_token" value="([^"]+)"', page.text).group(1)
        data = {"_csrf_token": csrf} if path.startswith("/privacy") and method == "POST" else None
        response = await client.request(
            method, path, data=data, json={} if data is None and method == "POST" else None
        )
        assert response.status_code < 500, (method, path, response.status_code)
        assert response.status_code not in (401, 403), (method, path, response.status_code)
