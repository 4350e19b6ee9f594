"""Fixtures of the CMP sync tests: the keys they act with, and a local receiver."""

from __future__ import annotations

import pytest

from tests.webhooks.receiver import Receiver


@pytest.fixture
async def manager(keys):
    return await keys.of("webhooks:manage")


@pytest.fixture
async def writer(keys):
    return await keys.of("consents:write")


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()
