"""Over the real ledger: arrival order never changes the outcome, and the latest choice by collection time
always decides. Histories and arrival orders are drawn from seeded generators (hypothesis does not drive the
async test client reliably: its example loop outlives the client's portal)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from tests.consents.helpers import batch, record

EXPECTED = {
    "granted": (True, "consent_granted"),
    "denied": (False, "consent_denied"),
    "withdrawn": (False, "consent_withdrawn"),
}


def history(seed: int) -> tuple[list[tuple[str, int]], list[int], bool]:
    """Choices with distinct collection times (minutes ago; a tie is settled by arrival, by design), the order
    they arrive in, and whether they arrive in one call."""
    rng = random.Random(seed)
    minutes = rng.sample(range(1, 10_000), rng.randint(1, 6))
    choices = [(rng.choice(sorted(EXPECTED)), m) for m in minutes]
    order = list(range(len(choices)))
    rng.shuffle(order)
    return choices, order, rng.random() < 0.5


@pytest.mark.parametrize("seed", range(30))
async def test_the_latest_choice_decides_whatever_order_it_arrived_in(client, admin, seed):
    choices, order, one_call = history(seed)
    email = f"prop{seed}@example.com"
    now = datetime.now(UTC)
    records = [
        record(
            email,
            purpose="personalization",
            status=status,
            region="DE",
            at=(now - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
        )
        for status, minutes in choices
    ]
    arriving = [records[i] for i in order]
    for chunk in [arriving] if one_call else [[r] for r in arriving]:
        response = await client.post("/v1/consents", json=batch(*chunk), headers=admin)
        assert response.status_code == 201, response.text
    latest_status = min(choices, key=lambda choice: choice[1])[0]  # fewest minutes ago = collected last
    body = {
        "subject": {"identifiers": [{"type": "email", "value": email}]},
        "purpose": "personalization",
        "region": "DE",
    }
    answer = (await client.post("/v1/decisions", json=body, headers=admin)).json()
    assert (answer["allowed"], answer["reason"]) == EXPECTED[latest_status]
