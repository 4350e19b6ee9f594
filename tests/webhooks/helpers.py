"""What the outbound webhook tests do through the API: subscribe, write consent, wait for deliveries."""

from __future__ import annotations

import asyncio

from tests.consents.helpers import batch


async def subscribe(client, manager, url: str, **extra) -> dict:
    response = await client.post(
        "/v1/webhooks/subscriptions",
        json={"url": url, "events": ["consent.changed"], **extra},
        headers=manager,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def write(client, writer, *records) -> dict:
    response = await client.post("/v1/consents", json=batch(*records), headers=writer)
    assert response.status_code == 201, response.text
    return response.json()


async def deliveries(client, manager, sub: dict, **params) -> list[dict]:
    response = await client.get(
        f"/v1/webhooks/subscriptions/{sub['id']}/deliveries", params=params, headers=manager
    )
    assert response.status_code == 200, response.text
    return sorted(response.json()["deliveries"], key=lambda d: d["seq"])


async def settle(
    client, manager, sub: dict, done=lambda ds: ds and all(d["status"] != "pending" for d in ds)
):
    for _ in range(300):
        got = await deliveries(client, manager, sub)
        if done(got):
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries did not settle: {got}")
