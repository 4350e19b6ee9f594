"""`consent-svc import`: NDJSON and CSV, bad lines reported by number and skipped, the rest stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import LOOKUP_SECRET, MASTER_KEY
from tests.consents.helpers import record

CLI = str(Path(sys.executable).parent / "consent-svc")


def run_import(db_url: str, tmp_path: Path, path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CONSENT_SVC_MASTER_KEY": MASTER_KEY,
        "CONSENT_SVC_LOOKUP_SECRET": LOOKUP_SECRET,
        "CONSENT_SVC_DATA_DIR": str(tmp_path),
    }
    return subprocess.run([CLI, "import", str(path)], env=env, capture_output=True, text=True, timeout=120)


async def test_ndjson_import_reports_bad_lines_and_stores_the_rest(db_url, tmp_path, conn):
    lines = [json.dumps(record(f"user{i}@example.com", purpose="analytics")) for i in range(2500)]
    lines[10] = "{not json"
    lines[20] = json.dumps(record("bad@example.com", purpose="telepathy"))
    lines[30] = json.dumps(record(identifiers=[{"type": "phone", "value": "nope"}]))
    lines.append(lines[0])  # a resent line: stored once, counted as a duplicate
    path = tmp_path / "consents.ndjson"
    path.write_text("\n".join(lines) + "\n")

    result = run_import(db_url, tmp_path, path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {"accepted": 2498, "duplicates": 1, "rejected": 3}
    for number, field in ((11, ""), (21, "purpose"), (31, "subject.identifiers[0].value")):
        assert f"line {number}:" in result.stderr and field in result.stderr
    assert "nope" not in result.stderr.replace("line 31", "")
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 2497


async def test_csv_import(db_url, tmp_path, conn):
    path = tmp_path / "consents.csv"
    path.write_text(
        "identifier_type,identifier_value,purpose,status,collected_at,region,source_system,notice_id,notice_version\n"
        "email,ann@example.com,email_marketing,withdrawn,2026-02-01T00:00:00Z,DE,crm,privacy,3\n"
        "email,Ann@Example.com,email_marketing,granted,2026-01-01T00:00:00Z,DE,crm,privacy,3\n"
        "email,bob@example.com,email_marketing,granted,2026-01-01T00:00:00,DE,crm,privacy,3\n"
    )
    result = run_import(db_url, tmp_path, path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {"accepted": 2, "duplicates": 0, "rejected": 1}
    assert "line 4:" in result.stderr
    # Out of order in the file: the older grant is kept in the history, the later withdrawal stays current.
    assert await conn.fetchval("SELECT status FROM consent_state") == "withdrawn"
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 2


async def test_import_line_linking_two_existing_subjects_is_rejected_alone(db_url, tmp_path, conn):
    first = tmp_path / "first.ndjson"
    first.write_text("\n".join(json.dumps(record(f"u{i}@example.com")) for i in range(2)) + "\n")
    assert json.loads(run_import(db_url, tmp_path, first).stdout)["accepted"] == 2
    second = tmp_path / "second.ndjson"
    linking = record(
        identifiers=[
            {"type": "email", "value": "u0@example.com"},
            {"type": "email", "value": "u1@example.com"},
        ]
    )
    second.write_text(json.dumps(record("u2@example.com")) + "\n" + json.dumps(linking) + "\n")
    result = run_import(db_url, tmp_path, second)
    assert json.loads(result.stdout) == {"accepted": 1, "duplicates": 0, "rejected": 1}
    assert "line 2:" in result.stderr and "different subjects" in result.stderr
    assert await conn.fetchval("SELECT count(*) FROM subjects") == 3


async def test_lines_that_are_not_utf8_or_hold_nul_are_rejected_alone(db_url, tmp_path, conn):
    good = [json.dumps(record(f"ok{i}@example.com")).encode() for i in range(3)]
    nul = json.dumps({**record("nul@example.com"), "source": {"system": "crm\u0000"}}).encode()
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(b"\n".join([good[0], b'{"subject": "\xff\xfe"}', good[1], nul, good[2]]) + b"\n")
    result = run_import(db_url, tmp_path, path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {"accepted": 3, "duplicates": 0, "rejected": 2}
    assert "line 2: not UTF-8 text" in result.stderr and "line 4:" in result.stderr
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 3


async def test_csv_with_a_broken_line_goes_on(db_url, tmp_path, conn):
    path = tmp_path / "broken.csv"
    path.write_bytes(
        b"identifier_type,identifier_value,purpose,status,collected_at,region,source_system\n"
        b"email,a@example.com,analytics,granted,2026-01-01T00:00:00Z,FR,crm\n"
        b"email,\xff@example.com,analytics,granted,2026-01-01T00:00:00Z,FR,crm\n"
        b"email,b@example.com,analytics,granted,2026-01-01T00:00:00Z,FR,crm,extra\n"
        b"email,c@example.com,analytics,granted,2026-01-01T00:00:00Z,FR,crm\n"
    )
    result = run_import(db_url, tmp_path, path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == {"accepted": 2, "duplicates": 0, "rejected": 2}
    assert "line 3: not UTF-8 text" in result.stderr and "line 4:" in result.stderr
