"""Ingest benchmark: how fast does POST /v1/consents write records, and at what CPU cost?

    make bench ARGS="--records 200000 --batch 2000 --concurrency 4 --workers 2"
    make bench ARGS="--before REV"                     # REV and this checkout, interleaved, 3 rounds
    .venv/bin/python bench/ingest.py --existing        # timed pass on subjects already stored
    .venv/bin/python bench/ingest.py --database-url postgresql://postgres@127.0.0.1:5432/bench

Starts `consent-svc serve` on a free port (embedded PostgreSQL in a fresh temp data directory unless
--database-url is given), creates an admin key with the CLI, pre-encodes every batch, then sends them from
--concurrency threads with one keep-alive connection each. Records have new subjects; with --existing an
untimed first pass writes the subjects and the timed pass records other purposes for them.

Prints records, wall seconds, records/s, per-call latency p50/p90/p99/max (ms), non-201 answers (exit 1 if
any), and the CPU seconds (user+system) of the serve process tree and of the embedded PostgreSQL before and
after the timed pass, and per 1,000 records. Stops the service with SIGTERM and removes the temp directory.

--before REV checks REV out into a temporary git worktree and runs it from there (PYTHONPATH wins over the
editable install), alternating with this checkout for --rounds runs each, every run as above (its own
service and temp database); then prints the medians of each side's figures and after/before."""

from __future__ import annotations

import argparse
import http.client
import json
import secrets
import sys
import threading
import time

from common import Service, add_compare_options, pct, run_or_compare

OTHER_PURPOSES = ("email_marketing", "personalization", "sms_marketing", "profiling")
SOURCE = {"system": "bench", "touchpoint": "web", "method": "banner", "notice": {"id": "n", "version": "1"}}
# The figures compared with --before: (key of one_run's result, label, format).
FIGURES = [
    ("rps", "records/s", ",.0f"),
    ("wall", "wall seconds", ".2f"),
    ("p50", "call p50 ms", ".1f"),
    ("p90", "call p90 ms", ".1f"),
    ("p99", "call p99 ms", ".1f"),
    ("max", "call max ms", ".1f"),
    ("app_k", "CPU s/1,000 records service", ".3f"),
    ("pg_k", "CPU s/1,000 records postgres", ".3f"),
    ("total_k", "CPU s/1,000 records total", ".3f"),
]


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


def one_run(args: argparse.Namespace, command: list[str] | None = None, env: dict | None = None) -> dict:
    """A fresh service (of this checkout, or `command` with `env` for an older one) and the timed pass."""
    with Service(args.workers, args.database_url, command, env) as service:
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
        external = service.pgdata is None

    lat = sorted(latencies)
    per_k = 1000 / args.records
    return {
        "wall": wall,
        "rps": args.records / wall,
        "calls": len(lat),
        "p50": pct(lat, 50),
        "p90": pct(lat, 90),
        "p99": pct(lat, 99),
        "max": lat[-1] * 1000,
        "failures": failures,
        "cpu": {"service": (app0, app1), "postgres": (pg0, pg1), "total": (app0 + pg0, app1 + pg1)},
        "app_k": (app1 - app0) * per_k,
        "pg_k": (pg1 - pg0) * per_k,
        "total_k": (app1 + pg1 - app0 - pg0) * per_k,
        "external": external,
        "failed": bool(failures or setup_failures),
    }


def report(args: argparse.Namespace, r: dict) -> None:
    mode = "existing subjects, other purposes" if args.existing else "new subjects"
    db = "external PostgreSQL" if args.database_url else "embedded PostgreSQL"
    print(f"ingest: batch {args.batch}, concurrency {args.concurrency}, workers {args.workers}, {mode}, {db}")
    print(f"records        {args.records}")
    print(f"wall seconds   {r['wall']:.2f}")
    print(f"records/s      {r['rps']:,.0f}")
    print(
        f"calls          {r['calls']}: latency ms p50 {r['p50']:.1f}  p90 {r['p90']:.1f}  "
        f"p99 {r['p99']:.1f}  max {r['max']:.1f}"
    )
    print(f"non-201        {r['failures']}")
    per_k = 1000 / args.records
    for label, (before, after) in r["cpu"].items():
        if label != "postgres" or not r["external"]:
            print(
                f"CPU s {label:<9}before {before:8.2f}  after {after:8.2f}  "
                f"used {after - before:7.2f}  per 1,000 records {(after - before) * per_k:.3f}",
                flush=True,
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2_000, help="records per call (1..10,000)")
    ap.add_argument("--concurrency", type=int, default=4, help="client threads, one connection each")
    ap.add_argument("--workers", type=int, default=2, help="passed to consent-svc serve")
    ap.add_argument("--existing", action="store_true", help="time a second pass on subjects already written")
    ap.add_argument("--database-url", help="external PostgreSQL instead of the embedded one")
    add_compare_options(ap)
    args = ap.parse_args()
    if not 1 <= args.batch <= 10_000 or args.records < 1:
        ap.error("--batch must be 1..10,000 and --records at least 1")
    return run_or_compare(args, one_run, report, FIGURES, "pg_k", "ingest")


if __name__ == "__main__":
    sys.exit(main())
