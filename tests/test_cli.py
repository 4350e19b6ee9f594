"""The CLI's key and migration commands, as an operator runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import LOOKUP_SECRET, MASTER_KEY
from tests.helpers import CLI, cli


async def test_keys_create_list_revoke(db_url, tmp_path, client):
    created = cli(
        db_url,
        tmp_path,
        "keys",
        "create",
        "--name",
        "crm",
        "--scope",
        "consents:write",
        "--scope",
        "consents:read",
    )
    assert created.returncode == 0, created.stderr
    new = json.loads(created.stdout)
    assert set(new) == {"id", "key", "name", "scopes"} and new["scopes"] == [
        "consents:read",
        "consents:write",
    ]
    auth = {"Authorization": f"Bearer {new['key']}"}
    assert (await client.get("/v1/purposes", headers=auth)).status_code == 200

    listed = [json.loads(line) for line in cli(db_url, tmp_path, "keys", "list").stdout.splitlines()]
    assert [(k["id"], k["revoked_at"]) for k in listed] == [(new["id"], None)]
    assert new["key"].split("_", 2)[2] not in cli(db_url, tmp_path, "keys", "list").stdout

    assert cli(db_url, tmp_path, "keys", "revoke", new["id"]).returncode == 0
    assert (await client.get("/v1/purposes", headers=auth)).status_code == 401
    again = cli(db_url, tmp_path, "keys", "revoke", new["id"])
    assert again.returncode == 2 and "no active key" in again.stderr


def test_migrate_on_a_current_database_applies_nothing(db_url, tmp_path):
    result = cli(db_url, tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"applied": []}


def test_cli_refuses_keys_the_data_was_not_written_with(db_url, tmp_path):
    assert cli(db_url, tmp_path, "migrate").returncode == 0  # records the test keys' digests
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CONSENT_SVC_MASTER_KEY": "Y" * 43 + "=",
        "CONSENT_SVC_LOOKUP_SECRET": LOOKUP_SECRET,
        "CONSENT_SVC_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run([CLI, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "CONSENT_SVC_MASTER_KEY is not the key this database's data was written with" in result.stderr


def test_policies_check_passes_on_the_shipped_policies_and_names_file_and_line_when_broken(db_url, tmp_path):
    ok = cli(db_url, tmp_path, "policies", "check")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: version ")
    broken = tmp_path / "policies"
    shutil.copytree(Path(__file__).parents[1] / "policies", broken)
    regions = broken / "regions.toml"
    regions.write_text(regions.read_text().replace('us_ca = ["US-CA"]', 'us_ca = ["US-CA", "FR"]'))
    bad = cli(db_url, tmp_path, "policies", "check", str(broken))
    assert bad.returncode == 2
    line = next(
        n for n, text in enumerate(regions.read_text().splitlines(), 1) if 'us_ca = ["US-CA", "FR"]' in text
    )
    assert f"regions.toml:{line}: region `FR` is in two regimes" in bad.stderr


def test_serve_refuses_to_start_on_invalid_policies(db_url, tmp_path):
    broken = tmp_path / "policies"
    shutil.copytree(Path(__file__).parents[1] / "policies", broken)
    (broken / "regimes" / "us_va.toml").write_text(
        (broken / "regimes" / "us_va.toml").read_text().replace('model = "opt_in"', 'model = "sometimes"', 1)
    )
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CONSENT_SVC_MASTER_KEY": MASTER_KEY,
        "CONSENT_SVC_LOOKUP_SECRET": LOOKUP_SECRET,
        "CONSENT_SVC_DATA_DIR": str(tmp_path),
        "CONSENT_SVC_POLICIES_DIR": str(broken),
    }
    result = subprocess.run(
        [CLI, "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "policies are invalid" in result.stderr and "regimes/us_va.toml:" in result.stderr
