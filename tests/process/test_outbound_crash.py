"""Delivery survives a crash: every consent change acknowledged before a kill -9 reaches the subscriber after
the restart, at least once, and in commit order once repeats are dropped by webhook-id."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.consents.helpers import batch, record
from tests.process.load import write_records
from tests.process.service import Service
from tests.receiver import Receiver

pytestmark = pytest.mark.process


async def test_every_acknowledged_change_is_delivered_after_kill9(local_service):
    receiver = Receiver()
    try:
        manager = local_service.key("webhooks:manage")
        status, sub = local_service.call(
            "POST",
            "/v1/webhooks/subscriptions",
            {"url": receiver.url, "events": ["consent.changed"]},
            key=manager,
        )
        assert status == 201, sub
        key = local_service.key("consents:write")
        acked: list[str] = []
        local_service.kill9_under_load(
            lambda stop, tag: write_records(local_service, key, acked, stop, tag, per_call=10), threads=3
        )
        assert len(acked) >= 100
        deadline = time.monotonic() + 120
        while True:
            first_seen: dict[str, dict] = {}
            for (headers, _), event in zip(list(receiver.received), receiver.events(None), strict=False):
                first_seen.setdefault(headers["webhook-id"], event)
            missing = set(acked) - {e["data"]["record_id"] for e in first_seen.values()}
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged changes never delivered"
        sequences = [e["sequence"] for e in first_seen.values()]
        assert sequences == sorted(sequences)  # repeats aside, in commit order across the restarts
    finally:
        receiver.close()


def delivery_process(svc: Service) -> int:
    """The pid of the service's delivery process (a child of serve, in its process group)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")  # noqa: SIM115
                if b"deliver" in cmdline and os.getpgid(int(entry)) == svc.proc.pid:
                    return int(entry)
            except OSError:
                continue
    raise AssertionError("no delivery process")


def _other_than(pid: int, first: int) -> int:
    assert pid != first, "still the first delivery process"
    return pid


async def eventually(find, seconds: float = 15):
    """What `find` returns once it stops raising AssertionError (a process that is still starting)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return find()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_deliveries_go_on_when_the_delivery_process_dies(local_service):
    receiver = Receiver()
    try:
        manager = local_service.key("webhooks:manage")
        status, _ = local_service.call(
            "POST",
            "/v1/webhooks/subscriptions",
            {"url": receiver.url, "events": ["consent.changed"]},
            key=manager,
        )
        assert status == 201
        key = local_service.key("consents:write")
        first = await eventually(lambda: delivery_process(local_service))
        os.kill(first, signal.SIGKILL)
        status, _ = local_service.call(
            "POST", "/v1/consents", batch(record("after@example.com", "analytics")), key=key
        )
        assert status == 201
        [event] = await receiver.wait_for(1, timeout=20)
        assert event["data"]["purpose"] == "analytics"
        # serve starts another a second after; on a loaded machine its start can take a while
        try:
            await eventually(lambda: _other_than(delivery_process(local_service), first), seconds=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the service's log:\n{local_service.log_tail()}") from None
    finally:
        receiver.close()
