"""The load the process tests put on a real service while they kill it: callers that keep what was acknowledged."""

from __future__ import annotations

import threading

from tests.consents.helpers import batch, record
from tests.process.service import Service


def write_records(
    svc: Service, key: str, acked: list[str], stop: threading.Event, tag: str, per_call: int = 50
) -> None:
    """POST /v1/consents in batches of `per_call` until stopped; the ids of the records answered 201."""
    n = 0
    while not stop.is_set():
        records = [record(f"{tag}-{n}-{i}@example.com", purpose="analytics") for i in range(per_call)]
        n += 1
        try:
            status, body = svc.call("POST", "/v1/consents", batch(*records), key=key, timeout=10)
        except OSError:
            continue  # the service died mid-call: nothing was acknowledged
        if status == 201:
            acked.extend(r["id"] for r in body["records"])
