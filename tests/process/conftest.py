"""The service as a real process on the test's database, with two workers."""

from __future__ import annotations

import pytest

from tests.conftest import LOOKUP_SECRET, MASTER_KEY
from tests.process.service import Service


@pytest.fixture
def service(db_url, tmp_path):
    env = {
        "DATABASE_URL": db_url,
        "CONSENT_SVC_MASTER_KEY": MASTER_KEY,
        "CONSENT_SVC_LOOKUP_SECRET": LOOKUP_SECRET,
    }
    svc = Service(env, tmp_path, workers=2)
    yield svc.start()
    svc.stop()
