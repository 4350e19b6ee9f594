"""Rate limits of the public side, with the default-sized buckets shrunk so a test reaches them."""

from __future__ import annotations

import msgspec
import pytest


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(settings, public_rate_per_address=5, public_rate_per_identifier=2)


def ask(email: str) -> dict:
    return {"type": "access", "subject": {"identifiers": [{"type": "email", "value": email}]}, "region": "DE"}


async def test_one_identifier_is_limited_before_the_address(client):
    answers = [
        (await client.post("/public/requests", json=ask("gus@example.com"))).status_code for _ in range(3)
    ]
    assert answers == [202, 202, 429]
    other = await client.post("/public/requests", json=ask("hal@example.com"))
    assert other.status_code == 202  # another identifier from the same address still goes through


async def test_a_flood_from_one_address_is_refused_with_retry_after(client):
    answers = [await client.post("/public/requests", json=ask(f"p{n}@example.com")) for n in range(8)]
    assert [a.status_code for a in answers] == [202] * 5 + [429] * 3
    assert answers[-1].headers["retry-after"] == "3600"
    assert answers[-1].headers["content-type"].startswith("application/problem+json")
