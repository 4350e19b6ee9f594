"""Helpers shared by test folders: the command line run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import LOOKUP_SECRET, MASTER_KEY

CLI = str(Path(sys.executable).parent / "consent-svc")


def cli(db_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "CONSENT_SVC_MASTER_KEY": MASTER_KEY,
        "CONSENT_SVC_LOOKUP_SECRET": LOOKUP_SECRET,
        "CONSENT_SVC_DATA_DIR": str(tmp_path),
    }
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)
