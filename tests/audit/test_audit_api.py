"""The audit log as a legal team uses it: every action logged, searched, exported, proven and verified."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import time
from datetime import datetime

import asyncpg
import pytest

from consent_svc import crypto
from consent_svc.audit import chain
from consent_svc.audit.integrator import MAX_DELAY_SECONDS
from consent_svc.audit.types import Checkpoint
from consent_svc.audit.verify import verify, verify_export
from tests.consents.helpers import record
from tests.decisions.helpers import check, decide, gpc_records, iso, write
from tests.helpers import cli

EMAIL = "ann@example.com"


async def chained(conn, timeout: float = 5.0) -> int:
    """Wait until every entry is in the tree; the tree size."""
    deadline = time.monotonic() + timeout
    while True:
        total = await conn.fetchval("SELECT count(*) FROM audit_log")
        size = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM audit_chain")
        if total == size:
            return size
        assert time.monotonic() < deadline, (total, size)
        await asyncio.sleep(0.05)


async def entries(client, headers, **query):
    response = await client.get("/v1/audit", params={k: str(v) for k, v in query.items()}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["entries"]


@pytest.fixture
async def legal(keys):
    return await keys.of("audit:read")


@pytest.fixture
def trusted(settings):
    signer = crypto.load_signing_key(settings)
    return {signer.key_id: signer.public_key}


async def test_consents_and_decisions_are_entries_of_one_log(client, admin, legal, keys):
    (receipt,) = await write(client, admin, record(email=EMAIL, purpose="personalization", region="DE"))
    answer = await decide(client, admin, check(email=EMAIL))
    found = await entries(client, legal, subject_id=receipt["subject_id"])
    assert [e["action"] for e in found] == ["decision.made", "consent.recorded"]  # newest first
    decision, consent = found
    admin_key = admin["Authorization"].split("_")[1]
    assert decision["entry_id"] == answer["decision_id"] and decision["actor"] == admin_key
    assert decision["outcome"] == "allowed" and decision["payload"]["reason"] == "consent_granted"
    assert decision["payload"]["policy_version"] == answer["policy"]["version"]
    assert consent["entry_id"] == receipt["id"] and consent["outcome"] == "granted"
    assert consent["payload"]["purpose"] == "personalization"
    # GET /v1/decisions/{id} reads the same entry
    shown = (await client.get(f"/v1/decisions/{answer['decision_id']}", headers=admin)).json()
    assert shown["reason"] == "consent_granted" and shown["consent_record"]["id"] == receipt["id"]


async def test_a_resent_record_is_not_logged_twice(client, admin, conn):
    r = record(email=EMAIL)
    await write(client, admin, r)
    await write(client, admin, r)
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'consent.recorded'") == 1


async def test_batch_items_and_replays_are_logged(client, admin, legal):
    items = [check(email=f"b{i}@example.com", region="US-CA", purpose="sale") for i in range(30)]
    assert (await client.post("/v1/decisions/batch", json={"items": items}, headers=admin)).status_code == 200
    replay = await client.post("/v1/decisions/replay", json={**check(), "at": iso(-60)}, headers=admin)
    assert replay.status_code == 200
    made = await entries(client, legal, action="decision.made", limit=100)
    assert len(made) == 30 and {e["payload"]["region"] for e in made} == {"US-CA"}
    (replayed,) = await entries(client, legal, action="decision.replayed")
    assert replayed["outcome"] == "denied" and replayed["payload"]["reason"] == "no_consent_opt_in_required"
    assert replayed["payload"]["lookup_hash"]  # an unknown subject: its keyed hash, never the address
    assert EMAIL not in json.dumps(replayed)


async def test_loading_policies_is_logged_once_per_version(client, legal, conn):
    (loaded,) = await entries(client, legal, action="policy.loaded")
    version = await conn.fetchval("SELECT version FROM policy_activations")
    assert loaded["actor"] == "system" and loaded["payload"]["version"] == version
    assert loaded["payload"]["files"]["regimes/eu_gdpr.toml"]


async def test_entries_join_the_tree_within_the_stated_delay(client, admin, conn):
    await chained(conn)
    answer = await decide(client, admin, check())
    answered = time.monotonic()
    while (
        await conn.fetchval("SELECT seq FROM audit_chain WHERE entry_id = $1::uuid", answer["decision_id"])
        is None
    ):
        assert time.monotonic() - answered <= MAX_DELAY_SECONDS, "not chained within the stated delay"
        await asyncio.sleep(0.02)


async def test_concurrent_writers_each_chained_once_in_a_gapless_tree(client, admin, conn, db_url):
    # A transaction that wrote an entry and is still open holds the horizon: entries committed after it wait,
    # then all join, none twice.
    slow = await asyncpg.connect(db_url)
    try:
        await chained(conn)
        tx = slow.transaction()
        await tx.start()
        await slow.execute(
            "INSERT INTO audit_log (entry_id, at, action, actor, payload) "
            "VALUES (gen_random_uuid(), now(), 'test.slow', 'system', '{}')"
        )
        await asyncio.gather(*(decide(client, admin, check(email=f"c{i}@example.com")) for i in range(40)))
        await asyncio.sleep(MAX_DELAY_SECONDS)
        waiting = await conn.fetchval(
            "SELECT count(*) FROM audit_log e WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.entry_id = e.entry_id)"
        )
        assert waiting == 40  # held back by the open transaction, not skipped
        await tx.commit()
    finally:
        await slow.close()
    size = await chained(conn)
    seqs = [r[0] for r in await conn.fetch("SELECT seq FROM audit_chain ORDER BY seq")]
    assert seqs == list(range(1, size + 1))
    assert await conn.fetchval("SELECT count(DISTINCT entry_id) FROM audit_chain") == size


async def test_search_filters_and_pages_newest_first(client, admin, legal, keys):
    engine = await keys.of("decisions:check")
    await write(client, admin, record(email=EMAIL, purpose="personalization", region="DE"))
    for i in range(7):
        await decide(client, engine, check(email=EMAIL if i % 2 else f"x{i}@example.com"))
    engine_id = engine["Authorization"].split("_")[1]
    by_engine = await entries(client, legal, actor=engine_id)
    assert len(by_engine) == 7 and all(e["actor"] == engine_id for e in by_engine)
    allowed = await entries(client, legal, outcome="allowed")
    assert len(allowed) == 3
    assert len(await entries(client, legal, action="decision.*")) == 7
    assert len(await entries(client, legal, action="consent.recorded")) == 1
    assert await entries(client, legal, since=iso(60)) == []
    assert len(await entries(client, legal, until=iso(60), action="decision.made")) == 7
    # pages: every entry once, in order
    seen, cursor = [], None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/audit", params=params, headers=legal)).json()
        seen += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Compared as instants: as text, a whole second ("...:21Z") sorts after "...:21.024000Z".
    ats = [(datetime.fromisoformat(e["at"]), e["entry_id"]) for e in seen]
    assert ats == sorted(ats, reverse=True) and len(set(ats)) == len(ats) == 9  # + policy.loaded


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"cursor": "nope"}, 400),
        ({"limit": "0"}, 422),
        ({"limit": "1001"}, 422),
        ({"subject_id": "not-a-uuid"}, 422),
        ({"since": "yesterday"}, 422),
        ({"since": "2026-01-01T00:00:00"}, 422),
        ({"since": "2026"}, 422),  # once read as Unix seconds: 1970-01-01T00:33:46Z, silently
        ({"until": "1767225600"}, 422),
    ],
)
async def test_bad_search_is_a_problem_not_a_500(client, legal, query, status):
    response = await client.get("/v1/audit", params=query, headers=legal)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/audit/checkpoints?cursor=9223372036854775808", {}, 422),
        ("/v1/audit/checkpoints?cursor=-1", {}, 422),
        ("/v1/audit/1000000000000000000000000000000", {}, 404),
        ("/v1/audit/-3", {}, 404),
        ("/v1/audit/export?actor=%00", {}, 422),
        ("/v1/audit/export?since=0001-01-01T00:00:00%2B05:00", {}, 422),
        ("/v1/audit/export", {"Accept": "text/csv;q=1e400"}, 200),
    ],
)
async def test_odd_requests_get_an_answer_not_a_500(client, legal, path, headers, status):
    response = await client.get(path, headers={**legal, **headers})
    assert response.status_code == status, response.text


async def test_audit_needs_the_audit_scope(client, keys):
    for scope in ("decisions:check", "consents:read"):
        response = await client.get("/v1/audit", headers=await keys.of(scope))
        assert response.status_code == 403


async def test_an_entry_comes_with_a_proof_that_checks_against_the_signed_checkpoint(
    client, admin, legal, trusted, conn
):
    for i in range(12):
        await decide(client, admin, check(email=f"p{i}@example.com"))
    await chained(conn)  # not yet signed: the request signs a checkpoint that covers it
    public = (await client.get("/v1/audit/public-key")).json()
    key = base64.b64decode(public["public_key"])
    assert {public["key_id"]: key} == trusted and "BEGIN PUBLIC KEY" in public["pem"]
    response = await client.get("/v1/audit/7", headers=legal)
    assert response.status_code == 200, response.text
    shown = response.json()
    e, cp = shown["entry"], shown["checkpoint"]
    assert e["seq"] == 7 and cp["tree_size"] >= 7
    leaf = chain.leaf_hash(
        json.dumps(
            [1, e["entry_id"], e["at"], e["action"], e["actor"], e["subject_id"], e["outcome"], e["payload"]],
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
    )
    assert base64.b64encode(leaf).decode() == shown["leaf_hash"]
    proof = [base64.b64decode(p) for p in shown["inclusion_proof"]]
    root = base64.b64decode(cp["root_hash"])
    assert chain.root_from_proof(7, cp["tree_size"], leaf, proof) == root
    assert crypto.signature_valid(key, base64.b64decode(cp["signature"]), cp["signed_note"].encode())
    assert shown["previous"]["seq"] == 6 and shown["next"]["seq"] == 8
    assert (await client.get("/v1/audit/0", headers=legal)).status_code == 404
    assert (await client.get("/v1/audit/999999", headers=legal)).status_code == 404


async def test_export_streams_every_match_and_verifies_offline(client, admin, legal, trusted, tmp_path):
    (receipt,) = await write(client, admin, record(email=EMAIL, purpose="personalization", region="DE"))
    for i in range(25):
        await decide(client, admin, check(email=EMAIL if i % 5 else f"o{i}@example.com"))
    response = await client.get(
        "/v1/audit/export", params={"subject_id": receipt["subject_id"]}, headers=legal
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.text.splitlines()
    assert len(lines) == 1 + 20 + 1  # the consent, its subject's decisions, the checkpoint
    end = json.loads(lines[-1])
    assert end["entries"] == 21 and end["checkpoint"]["tree_size"] >= max(
        json.loads(x)["seq"] for x in lines[:-1]
    )
    assert EMAIL not in response.text
    path = tmp_path / "export.ndjson"
    path.write_text(response.text)
    report = verify_export(path, trusted)
    assert report.ok and report.entries == 21, report.line()
    # a line changed, a line dropped, a foreign key: each caught
    changed = path.with_name("changed.ndjson")
    changed.write_text(response.text.replace('"outcome":"allowed"', '"outcome":"denied"', 1))
    assert not verify_export(changed, trusted).ok
    dropped = path.with_name("dropped.ndjson")
    dropped.write_text("\n".join(lines[:3] + lines[4:]) + "\n")
    assert "lines were added, removed or edited" in verify_export(dropped, trusted).problem
    # ... even with the count on the last line adjusted to match: the count is signed
    recounted = path.with_name("recounted.ndjson")
    recounted.write_text(
        "\n".join(lines[:3] + lines[4:-1] + [lines[-1].replace('"entries":21', '"entries":20')]) + "\n"
    )
    assert "signature is not valid" in verify_export(recounted, trusted).problem
    other = crypto.Signer(b"\x07" * 32)
    assert "not trusted" in verify_export(path, {other.key_id: other.public_key}).problem
    cut = path.with_name("cut.ndjson")
    cut.write_text("\n".join(lines[:-1]) + "\n")
    assert "cut short" in verify_export(cut, trusted).problem
    # forged entries closed by a forged empty-log line, signed by someone else
    forged = path.with_name("forged.ndjson")
    tail = {**end, "checkpoint": None, "entries": 0}
    forged.write_text("\n".join([*lines[:-1], json.dumps(tail)]) + "\n")
    assert not verify_export(forged, trusted).ok


async def test_an_export_of_nothing_is_signed_too(client, legal, trusted, tmp_path):
    response = await client.get("/v1/audit/export", params={"action": "request.*"}, headers=legal)
    lines = response.text.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["entries"] == 0
    path = tmp_path / "empty.ndjson"
    path.write_text(response.text)
    assert verify_export(path, trusted).ok
    path.write_text(json.dumps({"seq": 1}) + "\n" + response.text)
    assert not verify_export(path, trusted).ok


async def test_export_as_csv_ends_with_its_checkpoint(client, admin, legal):
    for i in range(3):
        await decide(client, admin, check(email=f"v{i}@example.com"))
    response = await client.get(
        "/v1/audit/export", params={"action": "decision.made"}, headers={**legal, "Accept": "text/csv"}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["action"] for r in rows] == ["decision.made"] * 3 + ["checkpoint"]
    assert json.loads(rows[-1]["payload"])["entries"] == 3
    assert json.loads(rows[0]["payload"])["purpose"] == "personalization"


async def test_checkpoints_are_listed_newest_first_and_signed(client, admin, legal, trusted, conn):
    for round_ in range(3):
        await decide(client, admin, check(email=f"k{round_}@example.com"))
        await client.get("/v1/audit/export", headers=legal)  # signs a checkpoint now
    page = (await client.get("/v1/audit/checkpoints", params={"limit": "2"}, headers=legal)).json()
    sizes = [c["tree_size"] for c in page["checkpoints"]]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == 2 and page["next_cursor"]
    rest = (
        await client.get("/v1/audit/checkpoints", params={"cursor": page["next_cursor"]}, headers=legal)
    ).json()
    assert all(c["tree_size"] < sizes[-1] for c in rest["checkpoints"])
    latest = (await client.get("/v1/audit/checkpoints/latest", headers=legal)).json()
    assert latest["tree_size"] == sizes[0]
    key = next(iter(trusted.values()))
    assert crypto.signature_valid(key, base64.b64decode(latest["signature"]), latest["signed_note"].encode())


async def test_timeline_tells_a_subjects_story_in_order(client, admin, legal):
    (granted,) = await write(
        client, admin, record(email=EMAIL, purpose="personalization", region="DE", at=iso(-120))
    )
    await decide(client, admin, check(email=EMAIL))
    await write(
        client,
        admin,
        record(email=EMAIL, purpose="personalization", region="DE", status="withdrawn", at=iso(-60)),
    )
    await decide(client, admin, check(email=EMAIL))
    response = await client.get(f"/v1/subjects/{granted['subject_id']}/timeline", headers=legal)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [(i["kind"], i["outcome"]) for i in items] == [
        ("consent", "granted"),
        ("decision", "allowed"),
        ("consent", "withdrawn"),
        ("decision", "denied"),
    ]
    assert "consent_withdrawn" in items[3]["summary"] and "eu_gdpr" in items[3]["summary"]
    assert EMAIL not in response.text
    unknown = await client.get("/v1/subjects/00000000-0000-4000-8000-000000000000/timeline", headers=legal)
    assert unknown.status_code == 404


@pytest.mark.parametrize("table", ["audit_log", "audit_chain", "audit_checkpoints"])
async def test_the_log_refuses_update_delete_and_truncate(client, admin, conn, table):
    await decide(client, admin, check())
    await chained(conn)
    column = "tree_size" if table == "audit_checkpoints" else "at"
    for statement in (f"UPDATE {table} SET {column} = {column}", f"DELETE FROM {table}", f"TRUNCATE {table}"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)


async def tampered(db_url: str, *statements: str) -> None:
    """Change the database as someone with write access could, triggers off."""
    rogue = await asyncpg.connect(db_url)
    try:
        async with rogue.transaction():
            await rogue.execute("SET LOCAL session_replication_role = replica")
            for statement in statements:
                await rogue.execute(statement)
    finally:
        await rogue.close()


@pytest.fixture
async def logged(settings, keys, conn):
    """A log of some 36 entries, all chained and signed, and the service stopped (nothing heals the damage)."""
    from litestar.testing import AsyncTestClient

    from consent_svc.app import create_app

    admin = await keys.of("admin")
    async with AsyncTestClient(create_app(settings)) as client:
        await write(client, admin, *(record(email=f"t{i}@example.com") for i in range(10)))
        for i in range(25):
            await decide(client, admin, check(email=f"t{i}@example.com"))
    # the service signs what it holds when it stops
    size = await conn.fetchval("SELECT count(*) FROM audit_log")
    assert await conn.fetchval("SELECT max(tree_size) FROM audit_checkpoints") == size
    return size


def in_seq(seq: int) -> str:
    return f"(SELECT entry_id FROM audit_chain WHERE seq = {seq})"


TAMPERING = {
    "entry edited": (f"UPDATE audit_log SET outcome = 'x' WHERE entry_id = {in_seq(20)}", 20),
    "entry payload edited": (
        f"UPDATE audit_log SET payload = replace(payload::text, 'DE', 'FR')::json WHERE entry_id = {in_seq(15)}",
        15,
    ),
    "entry time edited": (
        f"UPDATE audit_log SET at = at + interval '1 second' WHERE entry_id = {in_seq(9)}",
        9,
    ),
    "entry deleted": (f"DELETE FROM audit_log WHERE entry_id = {in_seq(12)}", 12),
    "chain row deleted": ("DELETE FROM audit_chain WHERE seq = 17", 17),
    "chain rows reordered": (  # two entries swap places; each keeps its own leaf hash
        "CREATE TEMP TABLE pair AS SELECT * FROM audit_chain WHERE seq IN (21, 22); "
        "DELETE FROM audit_chain WHERE seq IN (21, 22); "
        "INSERT INTO audit_chain SELECT 43 - p.seq, p.entry_id, p.at, p.leaf_hash, q.nodes "
        "FROM pair p JOIN pair q ON q.seq = 43 - p.seq",
        21,
    ),
    "chain rows swapped whole": (  # leaf and nodes moved together
        "CREATE TEMP TABLE pair AS SELECT * FROM audit_chain WHERE seq IN (3, 4); "
        "DELETE FROM audit_chain WHERE seq IN (3, 4); "
        "INSERT INTO audit_chain SELECT 7 - seq, entry_id, at, leaf_hash, nodes FROM pair",
        3,
    ),
    "tree node edited": (
        "UPDATE audit_chain SET nodes = sha256(nodes) || substring(nodes FROM 33) WHERE seq = 16",
        15,
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
async def test_verify_names_the_first_seq_that_was_tampered_with(logged, db_url, conn, trusted, case):
    clean = await verify(conn, trusted)
    assert clean.ok and clean.entries == logged and clean.checkpoints >= 1 and clean.unsigned == 0, (
        clean.line()
    )
    statement, seq = TAMPERING[case]
    await tampered(db_url, statement)
    report = await verify(conn, trusted)
    assert not report.ok and report.failed_seq == seq, report.line()
    assert report.line().startswith(f"FAIL at seq {seq}:")


async def test_verify_catches_an_entry_rewritten_with_every_hash_recomputed(logged, db_url, conn, trusted):
    """The strongest forger short of the signing key: edits an entry and recomputes its leaf and every tree
    node after it. Only the signed checkpoint can tell, and it does."""
    rows = await conn.fetch(
        "SELECT c.seq, e.entry_id, e.at, e.action, e.actor, e.subject_id, e.outcome, e.payload "
        "FROM audit_chain c JOIN audit_log e USING (entry_id) ORDER BY c.seq"
    )
    frontier, updates = chain.Frontier(), []
    for seq, entry_id, at, action, actor, subject_id, outcome, payload in rows:
        if seq == 5:
            outcome = "forged"
        leaf = chain.leaf_hash(chain.canonical(entry_id, at, action, actor, subject_id, outcome, payload))
        updates.append((seq, leaf, b"".join(frontier.append(leaf))))
    forged_entry = rows[4]["entry_id"]
    rogue = await asyncpg.connect(db_url)
    try:
        async with rogue.transaction():
            await rogue.execute("SET LOCAL session_replication_role = replica")
            await rogue.execute("UPDATE audit_log SET outcome = 'forged' WHERE entry_id = $1", forged_entry)
            await rogue.executemany(
                "UPDATE audit_chain SET leaf_hash = $2, nodes = $3 WHERE seq = $1", updates
            )
    finally:
        await rogue.close()
    report = await verify(conn, trusted)
    assert not report.ok and report.failed_seq <= 5 and "differs from the signed checkpoint" in report.problem


async def test_verify_catches_a_cut_tail_a_slipped_in_entry_and_a_forged_checkpoint(
    logged, db_url, conn, trusted
):
    await tampered(db_url, f"DELETE FROM audit_chain WHERE seq > {logged - 3}")
    report = await verify(conn, trusted)
    assert not report.ok and "a checkpoint covers" in report.problem

    await tampered(db_url, "DELETE FROM audit_checkpoints")  # rolled back to an older, smaller tree ...
    # ... and an entry slipped in behind the integrator (its txid below the chain's last entry)
    await tampered(
        db_url,
        "INSERT INTO audit_log (entry_id, at, action, actor, payload, txid) "
        "SELECT gen_random_uuid(), now(), 'consent.recorded', 'system', '{}', '1'::xid8",
    )
    report = await verify(conn, trusted)
    assert not report.ok and "not in the chain" in report.problem and report.failed_seq == 1

    other = crypto.Signer(b"\x01" * 32)
    await tampered(db_url, "DELETE FROM audit_log WHERE txid = '1'::xid8")
    await tampered(
        db_url,
        f"INSERT INTO audit_checkpoints VALUES (1, sha256(''), now(), '{other.key_id}', '\\x00')",
    )
    report = await verify(conn, trusted)
    assert not report.ok and report.failed_seq == 1 and "untrusted key" in report.problem


async def test_a_checkpoint_kept_elsewhere_catches_a_log_cut_back_with_its_checkpoints(
    logged, db_url, conn, trusted
):
    kept = await conn.fetchrow("SELECT * FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1")
    kept = Checkpoint(
        kept["tree_size"], kept["root_hash"], kept["signed_at"], kept["key_id"], kept["signature"], ""
    )
    assert (await verify(conn, trusted, kept=kept)).ok
    # the last entries and every checkpoint that covered them removed: the database alone looks fine ...
    await tampered(
        db_url,
        f"DELETE FROM audit_log WHERE entry_id IN (SELECT entry_id FROM audit_chain WHERE seq > {logged - 4})",
        f"DELETE FROM audit_chain WHERE seq > {logged - 4}",
        f"DELETE FROM audit_checkpoints WHERE tree_size > {logged - 4}",
    )
    assert (await verify(conn, trusted)).ok
    # ... but not against the checkpoint kept outside it
    report = await verify(conn, trusted, kept=kept)
    assert not report.ok and "cut back" in report.problem and report.failed_seq == logged - 3


async def test_verify_from_a_seq(logged, conn, trusted):
    report = await verify(conn, trusted, from_seq=logged - 5)
    assert report.ok and report.entries == 6, report.line()


async def test_verify_streams_with_progress(logged, conn, trusted, monkeypatch):
    from consent_svc.audit import verify as module

    monkeypatch.setattr(module, "FETCH", 7)
    monkeypatch.setattr(module, "PROGRESS_EVERY", 10)
    seen = []
    report = await verify(conn, trusted, progress=seen.append)
    assert report.ok and seen == list(range(10, logged + 1, 10)), report.line()


async def test_cli_verify_exits_non_zero_naming_the_seq(logged, db_url, tmp_path, settings):
    ok = cli(db_url, tmp_path, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"ok: {logged} entries verified"), ok.stdout
    await tampered(
        db_url, "DELETE FROM audit_log WHERE entry_id = (SELECT entry_id FROM audit_chain WHERE seq = 4)"
    )
    bad = cli(db_url, tmp_path, "audit", "verify")
    assert bad.returncode == 1 and bad.stdout.startswith("FAIL at seq 4:"), bad.stdout


async def test_key_changes_by_cli_are_logged(db_url, tmp_path, client, legal):
    import json as _json

    created = _json.loads(
        cli(db_url, tmp_path, "keys", "create", "--name", "crm", "--scope", "consents:read").stdout
    )
    assert cli(db_url, tmp_path, "keys", "revoke", created["id"]).returncode == 0
    (made,) = [
        e
        for e in await entries(client, legal, action="key.created")
        if e["payload"]["key_id"] == created["id"]
    ]
    assert made["payload"]["scopes"] == ["consents:read"] and created["key"] not in json.dumps(made)
    (revoked,) = await entries(client, legal, action="key.revoked")
    assert revoked["payload"] == {"key_id": created["id"]} and revoked["actor"] == "system"


async def test_the_services_own_gpc_opt_outs_are_logged_as_system(client, admin, legal):
    (receipt,) = await write(client, admin, record(purpose="email_marketing", region="US-CA", at=iso(-60)))
    answer = await decide(client, admin, check(purpose="sale", region="US-CA", gpc=True))
    assert answer["reason"] == "gpc_opt_out"
    assert len(await gpc_records(client, admin, receipt["subject_id"], want=3)) == 3
    logged = await entries(client, legal, subject_id=receipt["subject_id"], actor="system")
    assert sorted(e["payload"]["purpose"] for e in logged) == ["sale", "share", "targeted_advertising"]
    assert {e["outcome"] for e in logged} == {"denied"}


async def test_erasing_a_subject_leaves_the_log_verifying(client, admin, legal, conn, trusted):
    """Erasure destroys the subject's key and look-ups, never entries: the tree still verifies and the
    timeline still shows what happened, with nothing left to identify the person."""
    (receipt,) = await write(client, admin, record(email=EMAIL, purpose="personalization", region="DE"))
    await decide(client, admin, check(email=EMAIL))
    subject = receipt["subject_id"]
    await conn.execute(
        "UPDATE subjects SET wrapped_key = NULL, erased_at = now() WHERE subject_id = $1::uuid", subject
    )
    await conn.execute("DELETE FROM identifier_lookup WHERE subject_id = $1::uuid", subject)
    await chained(conn)
    await client.get("/v1/audit/export", headers=legal)  # signs a checkpoint over everything
    report = await verify(conn, trusted)
    assert report.ok and report.unsigned == 0, report.line()
    timeline = (await client.get(f"/v1/subjects/{subject}/timeline", headers=legal)).json()
    assert [i["kind"] for i in timeline["items"]] == ["consent", "decision"]
    # the erased person's next check is an unknown subject's: no entry links it to the old subject id
    await decide(client, admin, check(email=EMAIL))
    assert len(await entries(client, legal, subject_id=subject)) == 2


async def test_cli_verify_against_a_kept_checkpoint_and_without_a_key(logged, db_url, tmp_path, conn):
    latest = await conn.fetchrow("SELECT * FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1")
    kept = tmp_path / "kept.json"
    kept.write_text(
        json.dumps(
            {
                "tree_size": latest["tree_size"],
                "root_hash": base64.b64encode(latest["root_hash"]).decode(),
                "signed_at": latest["signed_at"].isoformat(),
                "key_id": latest["key_id"],
                "signature": base64.b64encode(latest["signature"]).decode(),
                "signed_note": "",
            }
        )
    )
    ok = cli(db_url, tmp_path, "audit", "verify", "--checkpoint", str(kept))
    assert ok.returncode == 0 and ok.stdout.startswith("ok: "), ok.stdout + ok.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    keyless = cli(db_url, elsewhere, "audit", "verify")
    assert keyless.returncode == 2 and "no audit signing key" in keyless.stderr
    assert not (elsewhere / "secrets" / "audit_signing_key.b64").exists()  # a verifier invents no key
