"""Audit log benchmarks: what recording every decision in the audit log costs the check, and verify's speed.

    make bench-audit ARGS="cost"        # check throughput before (decisions table) and after (audit log)
    make bench-audit ARGS="ingest"      # consent ingestion before and after (an entry per stored record)
    make bench-audit ARGS="verify"      # integrate and verify 1,000,000 entries

cost: checks out --before (default: the last commit before the audit log) into a temporary git worktree and
runs it from there (PYTHONPATH wins over the editable install), then alternates: a fresh `serve` of each
version, --subjects seeded, wrk on POST /v1/decisions for --seconds; --rounds times, before and after
interleaved, because this machine's throughput drifts by up to 2x within minutes. Prints each run and the
median of each side, requests/s and CPU per check (service and PostgreSQL).

verify: on a fresh embedded PostgreSQL (or --database-url), COPYs --entries decision entries into
audit_log, integrates them as the service does (timed), then runs `audit verify`'s function (timed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from check import check_script, seed, wrk
from common import ROOT, Service, checkout
from ingest import encode_batches, send_all

sys.path.insert(0, str(ROOT))

BEFORE = "e8715f4"  # issue 4 as it landed: decisions in their own table


def measure(service: Service, tag: str, args: argparse.Namespace) -> dict[str, float]:
    admin, engine = service.key("admin"), service.key("decisions:check")
    seed(service.port, admin, tag, args.subjects)
    app0, pg0 = service.cpu()
    run = wrk(
        f"http://127.0.0.1:{service.port}",
        args.connections,
        args.seconds,
        check_script(service.tmp, engine, tag, args.subjects),
    )
    app1, pg1 = service.cpu()
    per = 1e6 / run["requests"]
    return {**run, "app_us": (app1 - app0) * per, "pg_us": (pg1 - pg0) * per}


def ingest(service: Service, tag: str, args: argparse.Namespace) -> dict[str, float]:
    key = service.key("admin")
    bodies = encode_batches(tag, args.records, 2_000, lambda i: "analytics")
    app0, pg0 = service.cpu()
    wall, _, failures = send_all(service.port, key, bodies, 4)
    app1, pg1 = service.cpu()
    per = 1000 / args.records
    return {
        "rps": args.records / wall,
        "app_ms": (app1 - app0) * per * 1000,
        "pg_ms": (pg1 - pg0) * per * 1000,
        "failures": failures,
    }


def compare(args: argparse.Namespace) -> int:
    with checkout(args.before) as before:
        variants = {"before": before, "after": (None, {})}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for r in range(args.rounds):
            for name, (command, env) in variants.items() if r % 2 == 0 else reversed(variants.items()):
                with Service(args.workers, args.database_url, command, env) as service:
                    if args.what == "ingest":
                        run = ingest(service, f"{name}{r}", args)
                        line = (
                            f"{run['rps']:>7,.0f} records/s  CPU per 1,000 records service {run['app_ms']:.0f} ms "
                            f"postgres {run['pg_ms']:.0f} ms  non-201 {run['failures']:.0f}"
                        )
                    else:
                        run = measure(service, f"{name}{r}", args)
                        line = (
                            f"{run['rps']:>7,.0f} checks/s  p50 {run['p50']:5.2f} ms  p99 {run['p99']:6.2f} ms  "
                            f"CPU/check service {run['app_us']:.0f} us postgres {run['pg_us']:.0f} us  "
                            f"non-2xx {run['non2xx']:.0f}"
                        )
                results[name].append(run)
                print(f"round {r + 1} {name:<6} {line}", flush=True)
    unit = "records" if args.what == "ingest" else "checks"
    print(f"audit {args.what}: {args.workers} workers, {args.rounds} rounds, before = {args.before}")
    medians = {}
    for name, runs in results.items():
        medians[name] = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        m = medians[name]
        cpu = (
            f"CPU per 1,000 records service {m['app_ms']:.0f} ms postgres {m['pg_ms']:.0f} ms"
            if args.what == "ingest"
            else f"p99 {m['p99']:6.2f} ms  CPU/check service {m['app_us']:.0f} us  postgres {m['pg_us']:.0f} us"
        )
        print(f"{name:<6} median {m['rps']:>7,.0f} {unit}/s  {cpu}")
    change = medians["after"]["rps"] / medians["before"]["rps"] - 1
    budget = " (the budget is -10%)" if args.what == "cost" else ""
    print(f"throughput after/before: {change:+.1%}{budget}")
    return 0


async def verify_speed(args: argparse.Namespace) -> int:
    import asyncpg

    from consent_svc import crypto, db, ids
    from consent_svc.audit import store as audit_store
    from consent_svc.audit.integrator import MAX_PER_ROUND, integrate, sign
    from consent_svc.audit.verify import verify
    from consent_svc.settings import Settings

    server = None
    tmp = Path(tempfile.mkdtemp(prefix="consent-svc-verify-"))
    url = args.database_url
    if url is None:
        settings = Settings(data_dir=str(tmp))
        server = db.start_embedded(settings)
        url = await db.ensure_database(server.get_uri())
    conn = await asyncpg.connect(url)
    try:
        await db.init_connection(conn)
        await db.migrate(conn)
        signer = crypto.Signer(os.urandom(32))
        payload = audit_store.payload(
            {
                "age": None,
                "existing_customer": False,
                "gpc": False,
                "lookup_hash": None,
                "policy_version": "2026-06+0123456789ab",
                "purpose": "personalization",
                "reason": "consent_granted",
                "record_id": None,
                "regime": "eu_gdpr",
                "regime_version": "2026-06",
                "region": "FR",
                "sensitive": False,
            }
        )
        t0 = time.perf_counter()
        for start in range(0, args.entries, 10_000):
            n = min(10_000, args.entries - start)
            unix_ms = ids.now_ms()
            at = audit_store.ms_time(unix_ms)
            subjects = ids.uuid4s(n)
            rows = [
                (entry_id, at, "decision.made", "bench", subject, "allowed", payload)
                for entry_id, subject in zip(ids.uuid7s(n, unix_ms), subjects, strict=True)
            ]
            await audit_store.append(conn, rows)
        print(f"wrote {args.entries:,} entries in {time.perf_counter() - t0:.1f} s", flush=True)
        t0 = time.perf_counter()
        total = 0
        while True:
            async with conn.transaction():
                added, frontier = await integrate(conn)
                if added:
                    await sign(conn, signer, frontier)
            total += added
            if added < MAX_PER_ROUND:
                break
        seconds = time.perf_counter() - t0
        print(
            f"integrated {total:,} entries in {seconds:.1f} s: {total / seconds:,.0f} entries/s", flush=True
        )
        report = await verify(
            conn,
            {signer.key_id: signer.public_key},
            progress=lambda n: print(f"... {n:,} verified", flush=True),
        )
        print(f"verify: {report.line()}")
        return 0 if report.ok else 1
    finally:
        await conn.close()
        if server is not None:
            server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["cost", "ingest", "verify"])
    ap.add_argument("--before", default=BEFORE, help="git revision to compare against (cost)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--subjects", type=int, default=20_000)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--records", type=int, default=100_000, help="records per ingest run")
    ap.add_argument("--database-url", help="external PostgreSQL instead of the embedded one")
    args = ap.parse_args()
    if args.what == "cost" and not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    if args.what in ("cost", "ingest"):
        return compare(args)
    return asyncio.run(verify_speed(args))


if __name__ == "__main__":
    sys.exit(main())
