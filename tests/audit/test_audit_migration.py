"""Upgrading a database of the decisions issue: what it recorded becomes audit entries, shaped as the service
now writes them, and chains and verifies like the rest."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec
import pytest

from consent_svc import crypto, db
from consent_svc.audit.integrator import integrate, sign
from consent_svc.audit.verify import verify
from consent_svc.consents.store import RecordPayload
from consent_svc.decisions.store import DecisionPayload
from tests.conftest import _admin, _with_database


@pytest.fixture
async def old_db(pg_url):
    name = f"old_{uuid.uuid4().hex[:10]}"
    await _admin(pg_url, f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(_with_database(pg_url, name))
    await db.init_connection(conn)
    try:
        await db.migrate(conn, db.load_migrations()[:2])
        yield conn
    finally:
        await conn.close()
        await _admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_decisions_consents_policies_and_keys_recorded_before_become_entries(old_db):
    conn = old_db
    subject = uuid.uuid4()
    await conn.execute(
        "INSERT INTO consent_sources (source_id, source) VALUES ('\\x01', '{\"system\": \"web\"}'::jsonb)"
    )
    await conn.execute(
        "INSERT INTO consent_records (subject_id, record_id, purpose, status, collected_at, received_at, region, "
        "source_id, expires_at, fingerprint) VALUES "
        "($1, gen_random_uuid(), 'analytics', 'granted', '2026-03-01 10:00:00.5+00', '2026-03-02 00:00+00', 'DE', "
        "'\\x01', NULL, '\\x0203'), "
        "($1, gen_random_uuid(), 'sale', 'denied', '2026-04-01 10:00+00', '2026-04-01 10:00:01.25+00', 'US-CA', "
        "'\\x01', '2027-04-01 00:00+00', '\\x0405')",
        subject,
    )
    await conn.execute(
        "INSERT INTO decisions VALUES "
        "(gen_random_uuid(), '2026-03-05 12:00:00.123+00', $1, NULL, 'analytics', 'DE', false, 15, false, true, "
        "true, 'consent_granted', 'eu_gdpr', '2026-06', gen_random_uuid(), 'v1+abc', 'key1'), "
        "(gen_random_uuid(), '2026-05-05 12:00+00', NULL, '\\xaabb', 'sale', 'US-CA', true, NULL, true, false, "
        "false, 'gpc_opt_out', 'us_ca', '2026-01', NULL, 'v1+abc', 'key2')",
        subject,
    )
    await conn.execute("INSERT INTO policy_versions (version, files, declared) VALUES ('v1+abc', '{}', '{}')")
    await conn.execute("INSERT INTO policy_activations (version) VALUES ('v1+abc')")
    await conn.execute(
        "INSERT INTO api_keys (id, name, secret_hash, scopes, revoked_at) VALUES "
        "('key1', 'crm', '\\x00', '{consents:write}', now())"
    )

    await db.migrate(conn)

    rows = await conn.fetch("SELECT action, actor, outcome, payload FROM audit_log ORDER BY at, action")
    assert sorted(r["action"] for r in rows) == sorted(
        ["consent.recorded"] * 2 + ["decision.made"] * 2 + ["policy.loaded", "key.created", "key.revoked"]
    )
    shape = {"consent.recorded": RecordPayload, "decision.made": DecisionPayload}
    for row in rows:
        if row["action"] in shape:
            # the same bytes the service writes for such an entry today (compact, sorted keys)
            typed = msgspec.json.decode(row["payload"], type=shape[row["action"]])
            assert msgspec.json.encode(typed) == row["payload"], row["payload"]
    decided = {
        r["outcome"]: msgspec.json.decode(r["payload"]) for r in rows if r["action"] == "decision.made"
    }
    assert decided["denied"]["lookup_hash"] == "qrs=" and decided["denied"]["reason"] == "gpc_opt_out"
    assert decided["allowed"]["age"] == 15 and decided["allowed"]["existing_customer"] is True
    assert not await conn.fetchval("SELECT to_regclass('decisions') IS NOT NULL")

    signer = crypto.Signer(b"\x05" * 32)
    async with conn.transaction():
        added, frontier = await integrate(conn)
        await sign(conn, signer, frontier)
    assert added == 7
    report = await verify(conn, {signer.key_id: signer.public_key})
    assert report.ok and report.entries == 7, report.line()
