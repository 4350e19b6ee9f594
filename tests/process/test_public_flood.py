"""A flood of public requests from one address: the rate limit holds (429 with Retry-After past the limit),
and a customer at another address is still served. Prints the figures (pytest -s shows them)."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.process

FLOOD = 200


def submit(port: int, source: str, n: int) -> tuple[int, float, str | None]:
    body = {
        "type": "access",
        "subject": {"identifiers": [{"type": "email", "value": f"f{n}@example.com"}]},
        "region": "DE",
    }
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        conn.request("POST", "/public/requests", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started, response.getheader("Retry-After")
    finally:
        conn.close()


def test_a_flood_from_one_address_is_held_off_and_others_are_still_served(service):
    with ThreadPoolExecutor(16) as pool:
        flood = pool.map(lambda n: submit(service.port, "127.0.0.1", n), range(FLOOD))
        time.sleep(0.2)  # the flood is under way
        others = [submit(service.port, "127.0.0.2", 10_000 + n) for n in range(5)]
        flood = list(flood)
    statuses = [status for status, _, _ in flood]
    limited = statuses.count(429)
    print(
        f"\nflood: {FLOOD} requests from one address, {statuses.count(202)} accepted, {limited} refused with 429 "
        f"({limited / FLOOD:.0%}); another address: {[s for s, _, _ in others]}, "
        f"slowest {max(t for _, t, _ in others) * 1000:.0f} ms"
    )
    assert set(statuses) <= {202, 429}
    assert statuses.count(202) == 20  # CONSENT_SVC_PUBLIC_RATE_PER_ADDRESS, per hour
    assert all(retry == "3600" for status, _, retry in flood if status == 429)
    assert [s for s, _, _ in others] == [202] * 5
