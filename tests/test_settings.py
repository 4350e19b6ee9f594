"""Settings come from the environment; a bad one stops start-up with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from consent_svc.crypto import load_keys
from consent_svc.settings import Settings, SettingsError


def test_values_are_converted_from_strings():
    settings = Settings.from_env(
        {"CONSENT_SVC_PORT": "8081", "CONSENT_SVC_WORKERS": "2", "DATABASE_URL": "postgresql://x/y"}
    )
    assert (settings.port, settings.workers, settings.database_url) == (8081, 2, "postgresql://x/y")
    assert not settings.embedded


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONSENT_SVC_PORT": "eighty"}, "invalid setting CONSENT_SVC_PORT"),
        ({"CONSENT_SVC_PORT": "70000"}, "invalid setting CONSENT_SVC_PORT"),
        ({"CONSENT_SVC_LOG_LEVEL": "LOUD"}, "invalid setting CONSENT_SVC_LOG_LEVEL"),
        ({"CONSENT_SVC_PROT": "1"}, "unknown setting CONSENT_SVC_PROT"),
    ],
)
def test_bad_setting_names_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_external_database_without_keys_gets_generated_ones_with_a_warning(tmp_path, caplog):
    keys = load_keys(Settings(database_url="postgresql://x/y", data_dir=str(tmp_path)))
    assert keys == load_keys(Settings(database_url="postgresql://x/y", data_dir=str(tmp_path)))
    assert "generated master_key" in caplog.text and "CONSENT_SVC_MASTER_KEY" in caplog.text


def test_a_malformed_key_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="base64 of 32 bytes"):
        load_keys(
            Settings(
                database_url="postgresql://x/y", data_dir=str(tmp_path), master_key="short", lookup_secret="x"
            )
        )


def test_embedded_default_generates_keys_once_with_owner_only_permissions(tmp_path):
    first = load_keys(Settings(data_dir=str(tmp_path)))
    again = load_keys(Settings(data_dir=str(tmp_path)))
    assert first == again
    for name in ("master_key.b64", "lookup_secret.b64"):
        assert (tmp_path / "secrets" / name).stat().st_mode & 0o777 == 0o600


def test_cli_stops_with_one_line_on_a_bad_setting():
    env = {**os.environ, "CONSENT_SVC_PORT": "eighty"}
    result = subprocess.run(
        [sys.executable, "-m", "consent_svc.cli", "migrate"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "consent-svc: invalid setting CONSENT_SVC_PORT: expected `int`, got `str`"
    ]


def test_lookup_hasher_is_hmac_sha256():
    import hmac

    from consent_svc.crypto import LookupHasher

    secret = bytes(range(32))
    assert LookupHasher(secret)("email", "ann@example.com") == hmac.digest(
        secret, b"email\0ann@example.com", "sha256"
    )


def test_cli_unreachable_database_is_one_line_without_the_password():
    from tests.conftest import LOOKUP_SECRET, MASTER_KEY

    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://postgres:hunter2@127.0.0.1:1/x",
        "CONSENT_SVC_MASTER_KEY": MASTER_KEY,
        "CONSENT_SVC_LOOKUP_SECRET": LOOKUP_SECRET,
    }
    result = subprocess.run(
        [sys.executable, "-m", "consent_svc.cli", "migrate"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("consent-svc: cannot connect to the database on 127.0.0.1")
    assert "hunter2" not in result.stderr


async def test_other_keys_than_the_data_was_written_with_are_refused(conn):
    from consent_svc import db
    from consent_svc.crypto import Keys

    first = Keys(b"a" * 32, b"b" * 32)
    await db.verify_keys(conn, first.checks())
    await db.verify_keys(conn, first.checks())  # the same keys again: fine
    for other in (Keys(b"x" * 32, b"b" * 32), Keys(b"a" * 32, b"y" * 32)):
        with pytest.raises(db.KeyMismatch):
            await db.verify_keys(conn, other.checks())


def test_missing_secrets_of_an_existing_embedded_database_are_not_regenerated(tmp_path):
    load_keys(Settings(data_dir=str(tmp_path)))
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "PG_VERSION").write_text("18\n")
    (tmp_path / "secrets" / "master_key.b64").unlink()
    with pytest.raises(SettingsError, match="master_key.b64 is missing but the embedded database"):
        load_keys(Settings(data_dir=str(tmp_path)))
