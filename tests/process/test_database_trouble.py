"""The database goes away, refuses connections, or turns read-only while the service runs: requests fail
cleanly with 503 problems, nothing unstored is acknowledged, readiness goes red then green, and the service
serves again by itself, without a restart. Works on any PostgreSQL the suite runs on: the drills act on the
test's own database only (terminating its connections, closing it to new ones, making it read-only)."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import asyncpg
import pytest

pytestmark = pytest.mark.process


def record(email: str) -> dict:
    return {
        "subject": {"identifiers": [{"type": "email", "value": email}]},
        "purpose": "analytics",
        "status": "granted",
        "collected_at": "2026-11-01T10:00:00Z",
        "region": "FR",
        "source": {"system": "drill"},
    }


class Admin:
    """A superuser connection to the test's database, kept out of the drills' own terminations."""

    def __init__(self, pg_url: str, db_url: str) -> None:
        self.pg_url, self.db_url, self.name = pg_url, db_url, urlsplit(db_url).path.lstrip("/")

    async def run(self, *statements: str):
        conn = await asyncpg.connect(self.pg_url)  # the server's maintenance database
        try:
            results = [await conn.fetch(s) for s in statements]
        finally:
            await conn.close()
        return results[-1] if results else None

    async def terminate_service_connections(self) -> int:
        rows = await self.run(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
        )
        return len(rows)

    async def count(self, sql: str) -> int:
        conn = await asyncpg.connect(self.db_url, server_settings={"default_transaction_read_only": "off"})
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()


def past_dead_connections(call, tries: int = 20):
    """An answer once the service's pools have replaced the connections just terminated: a request that
    draws one before its worker has seen it close is a plain "unavailable, retry" (also a 503, also
    nothing stored), which is not the answer a drill is after."""
    for _ in range(tries):
        answer = call()
        if not (answer[0] == 503 and answer[1].get("detail") == "The database is unavailable; retry shortly"):
            return answer
        time.sleep(0.1)
    return answer


def wait_for(condition, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


async def test_killed_connections_and_a_closed_database_give_503s_then_the_service_recovers_alone(
    service, pg_url, db_url
):
    admin, writer = Admin(pg_url, db_url), service.key("consents:write", "decisions:check")
    answers: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def load(tag: str) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                status, body = service.call(
                    "POST", "/v1/consents", {"records": [record(f"{tag}{n}@x.org")]}, writer, 10
                )
                answers.append((status, body.get("type") if isinstance(body, dict) else None))
            except OSError as exc:  # the service itself never drops a connection in these drills
                answers.append((0, type(exc).__name__))

    callers = [threading.Thread(target=load, args=(f"t{i}-",)) for i in range(4)]
    for caller in callers:
        caller.start()
    try:
        time.sleep(1)
        # 1. Every connection killed under load, three times: the pool reconnects on its own.
        for _ in range(3):
            assert await admin.terminate_service_connections() >= 1
            time.sleep(0.7)
        # 2. The database refuses new connections: readiness goes red and calls get 503 problems.
        await admin.run(f'ALTER DATABASE "{admin.name}" ALLOW_CONNECTIONS false')
        await admin.terminate_service_connections()
        assert wait_for(lambda: service.call("GET", "/health/ready")[0] == 503)
        time.sleep(1)
        red = len(answers)
        await admin.run(f'ALTER DATABASE "{admin.name}" ALLOW_CONNECTIONS true')
        assert wait_for(lambda: service.call("GET", "/health/ready")[0] == 200)
        time.sleep(1)
    finally:
        stop.set()
        for caller in callers:
            caller.join()
        await admin.run(f'ALTER DATABASE "{admin.name}" ALLOW_CONNECTIONS true')
    statuses = [status for status, _ in answers]
    assert set(statuses) <= {201, 503}, sorted(set(answers))
    assert all(kind == "/problems/unavailable" for status, kind in answers if status == 503)
    assert 503 in statuses[:red] and statuses[-1] == 201, "red while closed, serving again after, unrestarted"
    assert service.proc.poll() is None
    # Nothing acknowledged is missing; nothing refused was stored.
    stored = await admin.count("SELECT count(*) FROM consent_records")
    assert stored >= statuses.count(201)


async def test_a_read_only_database_refuses_writes_with_503_and_says_so_in_the_log(service, pg_url, db_url):
    admin = Admin(pg_url, db_url)
    writer = service.key("consents:write", "consents:read", "decisions:check")
    assert service.call("POST", "/v1/consents", {"records": [record("before@x.org")]}, writer)[0] == 201
    await admin.run(f'ALTER DATABASE "{admin.name}" SET default_transaction_read_only = on')
    try:
        await admin.terminate_service_connections()
        refused = past_dead_connections(
            lambda: service.call("POST", "/v1/consents", {"records": [record("during@x.org")]}, writer)
        )
        check = {"subject": record("before@x.org")["subject"], "purpose": "analytics", "region": "FR"}
        # A check is answered only once its decision is recorded: no record, no answer.
        unrecorded = service.call("POST", "/v1/decisions", check, writer)
        reads = past_dead_connections(lambda: service.call("GET", "/v1/purposes", key=writer))
    finally:
        await admin.run(f'ALTER DATABASE "{admin.name}" RESET default_transaction_read_only')
        await admin.terminate_service_connections()
    assert refused[0] == 503 and refused[1]["type"] == "/problems/unavailable", refused
    assert "nothing was stored" in refused[1]["detail"]
    assert unrecorded[0] == 503, unrecorded
    assert reads[0] == 200  # reading still works
    assert "database refused a write: ReadOnlySQLTransactionError" in service.log_tail(all_of_it=True)
    assert await admin.count("SELECT count(*) FROM consent_records") == 1
    assert wait_for(
        lambda: service.call("POST", "/v1/consents", {"records": [record("after@x.org")]}, writer)[0] == 201
    )
