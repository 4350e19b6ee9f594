"""Properties of the ledger against the real database: whatever order records arrive in, and however they are
split into batches, a subject's current consent is its latest-collected record.

Ties (two records collected at the same instant) are the one place arrival matters, by design: within a batch
a refusal beats a grant; across batches the one received later wins (consents/store.py, UPSERT_STATE), as the
later message reflects the later knowledge. The properties below hold for distinct collection times, and for
ties inside one batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.consents.helpers import batch, record

BASE = datetime(2026, 11, 1, 10, tzinfo=UTC)
STATUSES = ("granted", "denied", "withdrawn")
# Each example writes a few records for a fresh subject: a database round trip each, so a modest budget.
DB_EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def deliveries(draw) -> tuple[list[tuple[int, str]], list[list[tuple[int, str]]]]:
    """A history of records collected at distinct times, and the batches it arrives in, in arrival order."""
    history = draw(
        st.lists(
            st.tuples(st.integers(0, 10_000), st.sampled_from(STATUSES)),
            min_size=1,
            max_size=6,
            unique_by=lambda r: r[0],
        )
    )
    arrival = draw(st.permutations(history))
    cuts = sorted(draw(st.sets(st.integers(1, len(arrival)), max_size=len(arrival))))
    bounds = [0, *cuts, len(arrival)]
    return history, [arrival[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if arrival[a:b]]


async def current(client, headers, email: str) -> str:
    ids = {"identifiers": [{"type": "email", "value": email}]}
    subject = (await client.post("/v1/subjects/lookup", json=ids, headers=headers)).json()["subject_id"]
    view = (await client.get(f"/v1/subjects/{subject}", headers=headers)).json()
    return {c["purpose"]: c["status"] for c in view["consents"]}["analytics"]


@DB_EXAMPLES
@given(case=deliveries())
async def test_arrival_order_and_batching_never_change_the_current_state(client, admin, case):
    history, batches = case
    email = f"{uuid4().hex}@example.com"
    for part in batches:
        body = batch(
            *(
                record(
                    email, purpose="analytics", status=status, at=(BASE + timedelta(minutes=m)).isoformat()
                )
                for m, status in part
            )
        )
        assert (await client.post("/v1/consents", json=body, headers=admin)).status_code == 201
    latest = max(history)[1]
    assert await current(client, admin, email) == latest


@DB_EXAMPLES
@given(statuses=st.lists(st.sampled_from(STATUSES), min_size=2, max_size=5))
async def test_within_a_batch_a_refusal_collected_at_the_same_instant_beats_a_grant(client, admin, statuses):
    email = f"{uuid4().hex}@example.com"
    at = BASE.isoformat()
    body = batch(*(record(email, purpose="analytics", status=s, at=at) for s in statuses))
    assert (await client.post("/v1/consents", json=body, headers=admin)).status_code == 201
    state = await current(client, admin, email)
    assert (state == "granted") == all(s == "granted" for s in statuses)
