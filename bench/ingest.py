"""Ingest benchmark: how fast does POST /v1/consents write records, and at what CPU cost?

    make bench ARGS="--records 200000 --batch 2000 --concurrency 4 --workers 2"
    .venv/bin/python bench/ingest.py --existing        # timed pass on subjects already stored
    .venv/bin/python bench/ingest.py --database-url postgresql://postgres@127.0.0.1:5432/bench

Starts `consent-svc serve` on a free port (embedded PostgreSQL in a fresh temp data directory unless
--database-url is given), creates an admin key with the CLI, pre-encodes every batch, then sends them from
--concurrency threads with one keep-alive connection each. Records have new subjects; with --existing an
untimed first pass writes the subjects and the timed pass records other purposes for them.

Prints records, wall seconds, records/s, per-call latency p50/p90/p99/max (ms), non-201 answers (exit 1 if
any), and the CPU seconds (user+system) of the serve process tree and of the embedded PostgreSQL before and
after the timed pass, and per 1,000 records. Stops the service with SIGTERM and removes the temp directory."""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import sys
import threading
import time

from common import Service, pct

OTHER_PURPOSES = ("email_marketing", "personalization", "sms_marketing", "profiling")
SOURCE = {"system": "bench", "touchpoint": "web", "method": "banner", "notice": {"id": "n", "version": "1"}}


def encode_batches(tag: str, n: int, batch: int, purpose_of) -> list[bytes]:
    def record(i: int) -> dict:
        return {
            "subject": {"identifiers": [{"type": "email", "value": f"u{i}-{tag}@example.com"}]},
            "purpose": purpose_of(i),
            "status": "granted",
            "collected_at": "2026-01-01T00:00:00Z",
            "region": "FR",
            "source": SOURCE,
        }

    return [
        json.dumps(
            {"records": [record(i) for i in range(start, min(start + batch, n))]}, separators=(",", ":")
        ).encode()
        for start in range(0, n, batch)
    ]


def send_all(port: int, key: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float], int]:
    """POST every body; returns (wall seconds, per-call latencies in s, count of non-201 answers)."""
    pending = iter(bodies)  # shared by the threads: next() on a list iterator is atomic under the GIL
    calls: list[tuple[float, int]] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for body in pending:
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/consents", body, headers)
                resp = conn.getresponse()
                data, status = resp.read(), resp.status
            except (OSError, http.client.HTTPException) as exc:
                data, status = repr(exc).encode(), 0
                conn.close()  # reconnects on the next request
            calls.append((time.perf_counter() - t0, status))
            if status != 201:
                print(f"non-201 answer: {status} {data[:300]!r}", file=sys.stderr)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, [t for t, _ in calls], sum(status != 201 for _, status in calls)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2_000, help="records per call (1..10,000)")
    ap.add_argument("--concurrency", type=int, default=4, help="client threads, one connection each")
    ap.add_argument("--workers", type=int, default=2, help="passed to consent-svc serve")
    ap.add_argument("--existing", action="store_true", help="time a second pass on subjects already written")
    ap.add_argument("--database-url", help="external PostgreSQL instead of the embedded one")
    args = ap.parse_args()
    if not 1 <= args.batch <= 10_000 or args.records < 1:
        ap.error("--batch must be 1..10,000 and --records at least 1")

    with Service(args.workers, args.database_url) as service:
        key = service.key("admin")
        port = service.port
        tag = secrets.token_hex(4)  # fresh subjects even on a reused external database
        setup_failures = 0
        if args.existing:
            first = encode_batches(tag, args.records, args.batch, lambda i: "analytics")
            wall, _, setup_failures = send_all(port, key, first, args.concurrency)
            print(f"setup pass: {args.records} records, new subjects, {wall:.2f} s, {setup_failures} non-201")
            del first
        bodies = encode_batches(
            tag,
            args.records,
            args.batch,
            (lambda i: OTHER_PURPOSES[i % 4]) if args.existing else (lambda i: "analytics"),
        )
        app0, pg0 = service.cpu()
        wall, latencies, failures = send_all(port, key, bodies, args.concurrency)
        app1, pg1 = service.cpu()
        pgdata = service.pgdata

    lat = sorted(latencies)
    per_k = 1000 / args.records
    mode = "existing subjects, other purposes" if args.existing else "new subjects"
    db = "external PostgreSQL" if args.database_url else "embedded PostgreSQL"
    print(f"ingest: batch {args.batch}, concurrency {args.concurrency}, workers {args.workers}, {mode}, {db}")
    print(f"records        {args.records}")
    print(f"wall seconds   {wall:.2f}")
    print(f"records/s      {args.records / wall:,.0f}")
    print(
        f"calls          {len(lat)}: latency ms p50 {pct(lat, 50):.1f}  p90 {pct(lat, 90):.1f}  "
        f"p99 {pct(lat, 99):.1f}  max {lat[-1] * 1000:.1f}"
    )
    print(f"non-201        {failures}")
    for label, before, after in (
        ("service", app0, app1),
        ("postgres", pg0, pg1),
        ("total", app0 + pg0, app1 + pg1),
    ):
        if label != "postgres" or pgdata:
            print(
                f"CPU s {label:<9}before {before:8.2f}  after {after:8.2f}  "
                f"used {after - before:7.2f}  per 1,000 records {(after - before) * per_k:.3f}"
            )
    return 1 if failures or setup_failures else 0


if __name__ == "__main__":
    sys.exit(main())
