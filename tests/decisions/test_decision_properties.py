"""Properties of the check over the real ledger: arrival order never changes the outcome, and the latest
choice by collection time always decides."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.consents.helpers import batch, record

SUBJECTS = itertools.count()
EXPECTED = {
    "granted": (True, "consent_granted"),
    "denied": (False, "consent_denied"),
    "withdrawn": (False, "consent_withdrawn"),
}

histories = st.lists(
    st.tuples(st.sampled_from(sorted(EXPECTED)), st.integers(min_value=1, max_value=10_000)),
    min_size=1,
    max_size=6,
    unique_by=lambda choice: choice[1],  # distinct collection times: a tie is settled by arrival, by design
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories, order=st.randoms(use_true_random=False), one_call=st.booleans())
async def test_the_latest_choice_decides_whatever_order_it_arrived_in(
    client, admin, history, order, one_call
):
    email = f"prop{next(SUBJECTS)}@example.com"
    now = datetime.now(UTC)
    records = [
        record(
            email,
            purpose="personalization",
            status=status,
            region="DE",
            at=(now - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
        )
        for status, minutes in history
    ]
    order.shuffle(records)
    for chunk in [records] if one_call else [[r] for r in records]:
        response = await client.post("/v1/consents", json=batch(*chunk), headers=admin)
        assert response.status_code == 201, response.text
    latest_status = min(history, key=lambda choice: choice[1])[0]  # fewest minutes ago = collected last
    body = {
        "subject": {"identifiers": [{"type": "email", "value": email}]},
        "purpose": "personalization",
        "region": "DE",
    }
    answer = (await client.post("/v1/decisions", json=body, headers=admin)).json()
    assert (answer["allowed"], answer["reason"]) == EXPECTED[latest_status]
