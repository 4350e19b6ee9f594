"""Fixtures of the CMP sync tests: a registered source."""

from __future__ import annotations

import pytest


@pytest.fixture
async def cmp(client, manager):
    response = await client.post(
        "/v1/sources", json={"name": "web-cmp", "default_region": "FR"}, headers=manager
    )
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["name"] == "web-cmp" and made["secret"].startswith("whsec_")
    return made["secret"]
