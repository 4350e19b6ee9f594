"""Policy versions in the database: each loaded set in full, and when it came into force."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from consent_svc.audit import store as audit_store
from consent_svc.policies.types import Policies

INSERT_VERSION = """
INSERT INTO policy_versions (version, files, declared) VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING
"""
# Several workers start at once: the advisory lock makes "activate unless already current" one step.
ACTIVATE = """
INSERT INTO policy_activations (version)
SELECT $1
WHERE $1 IS DISTINCT FROM (SELECT version FROM policy_activations ORDER BY activated_at DESC LIMIT 1)
RETURNING activated_at
"""
SELECT_FILES = "SELECT files FROM policy_versions WHERE version = $1"
SELECT_VERSION_AT = """
SELECT version FROM policy_activations WHERE activated_at <= $1 ORDER BY activated_at DESC LIMIT 1
"""
SELECT_VERSIONS = """
SELECT v.version, v.declared, v.loaded_at, max(a.activated_at) AS last_activated_at
FROM policy_versions v LEFT JOIN policy_activations a USING (version)
GROUP BY v.version ORDER BY v.loaded_at DESC
"""
POLICY_LOCK = 0x636F6E73656E7402  # pg_advisory_xact_lock key for activations


class VersionSummary(msgspec.Struct, frozen=True):
    version: str
    declared: dict[str, str]
    """Each file's own declared version."""
    loaded_at: datetime
    last_activated_at: datetime | None


def declared_versions(policies: Policies) -> dict[str, str]:
    out = {"purposes.toml": policies.purposes.version, "regions.toml": policies.regions.version}
    out.update({f"regimes/{r.id}.toml": r.version for r in policies.regimes.values()})
    return out


async def activate(conn: asyncpg.Connection, policies: Policies) -> None:
    """Store the loaded set (once per content) and mark it in force from now if it was not already."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", POLICY_LOCK)
        await conn.execute(INSERT_VERSION, policies.version, policies.files, declared_versions(policies))
        if await conn.fetchval(ACTIVATE, policies.version) is not None:
            declared = declared_versions(policies)
            await audit_store.append(
                conn,
                [
                    audit_store.entry(
                        "policy.loaded", audit_store.SYSTEM, {"version": policies.version, "files": declared}
                    )
                ],
            )


async def files_of(conn: asyncpg.Connection, version: str) -> dict[str, str] | None:
    return await conn.fetchval(SELECT_FILES, version)


async def version_at(conn: asyncpg.Connection, at: datetime) -> str | None:
    return await conn.fetchval(SELECT_VERSION_AT, at)


async def versions(conn: asyncpg.Connection) -> list[VersionSummary]:
    return [VersionSummary(**dict(row)) for row in await conn.fetch(SELECT_VERSIONS)]
