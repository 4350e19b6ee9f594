"""The service as a real process on the test's database, with two workers."""

from __future__ import annotations

import pytest

from tests.process.service import running


@pytest.fixture
def service(db_url, tmp_path):
    with running(db_url, tmp_path) as started:
        yield started
