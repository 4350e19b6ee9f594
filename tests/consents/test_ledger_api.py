"""The ledger through its HTTP API: what a caller writing and reading consent sees."""

from __future__ import annotations

from tests.consents.helpers import batch, record


async def test_record_is_acknowledged_with_ids(client, admin):
    response = await client.post("/v1/consents", json=batch(record()), headers=admin)
    assert response.status_code == 201, response.text
    (receipt,) = response.json()["records"]
    assert set(receipt) == {"id", "subject_id", "received_at", "duplicate"}
    assert receipt["duplicate"] is False
