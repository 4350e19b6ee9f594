"""The service as a real process on the test's database, with two workers."""

from __future__ import annotations

import pytest

from tests.process.service import running


@pytest.fixture
def service(db_url, tmp_path):
    with running(db_url, tmp_path) as started:
        yield started


@pytest.fixture
def local_service(db_url, tmp_path):
    with running(
        db_url,
        tmp_path,
        CONSENT_SVC_MODE="local",
        CONSENT_SVC_WEBHOOK_ALLOW_PRIVATE_NETWORKS="1",
        CONSENT_SVC_WEBHOOK_RETRY_BASE_SECONDS="0.1",
    ) as started:
        yield started
