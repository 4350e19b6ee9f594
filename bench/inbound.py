"""Inbound CMP benchmark: signed Standard Webhooks messages through POST /v1/inbound/{source}.

    make bench-inbound                          # 50,000 events, 2 workers, 32 connections
    make bench-inbound ARGS="--events 5000 --before REV"   # REV and this checkout, interleaved, 3 rounds
    .venv/bin/python bench/inbound.py --events 20000 --kind tcf
    .venv/bin/python bench/inbound.py --events 2000 --records 50   # a CMP that sends its records in batches

Starts `consent-svc serve` (embedded PostgreSQL in a fresh temp directory unless --database-url), registers a
source, pre-signs --events messages (each one event: a `consent.records` event of --records records, each for a
new subject, or with --kind tcf a `tcf.string` event, which becomes four records), then sends each exactly once
from wrk (1 thread, --connections; the Lua script stops after the last message). Prints events/s and records/s,
p50/p99 and the non-2xx count, and the CPU per event of the service and PostgreSQL. Signing uses the reference library.
A subscriber (bench/receiver.py, its own process) takes every `consent.changed` the events cause: the bench
prints the latency from each write to its delivery (p50/p99) and when the last one arrived.
Needs wrk (apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

from common import ROOT, Service, checkout, free_port, pct, wait_listening
from standardwebhooks.webhooks import Webhook

# tests/vectors/tcf.json tcf-005 (all purposes), whole: its core, disclosed-vendors and publisher segments.
TC_STRING = (
    "CQNlwwAQNlwwAEsACBENCWEsAP_gAEPgAAYgXcQBYAKgBQAvMBjIEZgXcAjNAEgAqADwC8wGMgRmAAAA"
    ".IXcQBYAKgBQAvMBjIEZgXcAA.YAAAAAAAAAAA"
)
SOURCE = {
    "system": "bench-cmp",
    "touchpoint": "web",
    "method": "banner",
    "notice": {"id": "n", "version": "1"},
}

# wrk calls request() once on thread 1's state to verify the script before connecting: that call is not sent,
# so it must not take a message (it took msg_0, and the bench counted one event fewer than it sent). Only the
# messages' answers (202, or a refusal; never /health/live's 200) count towards stopping. wrk's main thread
# sleeps out -d whatever its threads do, so the script writes a file when it is done and the bench interrupts
# wrk (SIGINT: it prints its summary), rather than leave it sending /health/live for minutes.
LUA = """
local messages, n, calls, done, finished = {}, 0, 0, 0, nil
init = function(args)
  finished = args[2]
  for line in io.lines(args[1]) do
    local id, ts, sig, body = line:match("([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t(.*)")
    n = n + 1
    messages[n] = {id, ts, sig, body}
  end
end
request = function()
  calls = calls + 1
  local m = messages[calls - 1]
  if m == nil then return wrk.format("GET", "/health/live") end
  return wrk.format("POST", "/v1/inbound/bench", {
    ["Content-Type"] = "application/json",
    ["webhook-id"] = m[1], ["webhook-timestamp"] = m[2], ["webhook-signature"] = m[3],
  }, m[4])
end
response = function(status, headers, body)
  if status ~= 200 then done = done + 1 end
  if done == n then
    io.open(finished, "w"):close()
    wrk.thread:stop()
  end
end
"""


def event(i: int, kind: str, tag: str, records: int = 1) -> dict:
    if kind == "tcf":
        subject = {"identifiers": [{"type": "email", "value": f"in{i}-{tag}@example.com"}]}
        return {"type": "tcf.string", "data": {"subject": subject, "tc_string": TC_STRING, "region": "FR"}}
    batch = [
        {
            "subject": {"identifiers": [{"type": "email", "value": f"in{i}.{j}-{tag}@example.com"}]},
            "purpose": "analytics",
            "status": "granted",
            "collected_at": "2026-11-01T00:00:00Z",
            "region": "FR",
            "source": SOURCE,
        }
        for j in range(records)
    ]
    return {"type": "consent.records", "data": {"records": batch}}


def post(service: Service, key: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{service.port}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def wait_drained(service: Service, key: str, subscription_id: str, timeout: float) -> int:
    """Waits until the subscription has nothing left to send; how many deliveries it gave up on."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(
        f"http://127.0.0.1:{service.port}/v1/webhooks/subscriptions/{subscription_id}",
        headers={"Authorization": f"Bearer {key}"},
    )
    while time.monotonic() < deadline:
        with urllib.request.urlopen(request) as response:
            subscription = json.loads(response.read())
        if subscription["pending"] == 0:
            return subscription["dead"]
        time.sleep(0.2)
    sys.exit("deliveries did not drain")


def one_run(args: argparse.Namespace, command: list[str] | None = None, env: dict | None = None) -> dict:
    local = {"CONSENT_SVC_MODE": "local", "CONSENT_SVC_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1", **(env or {})}
    with Service(args.workers, args.database_url, command, local) as service:
        manager = service.key("webhooks:manage")
        secret = post(service, manager, "/v1/sources", {"name": "bench"})["secret"]
        receiver_port = free_port()
        latencies_file = service.tmp / "latencies.json"
        receiver = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "receiver.py"), str(receiver_port), str(latencies_file)]
        )
        wait_listening(receiver_port)
        subscription = {"url": f"http://127.0.0.1:{receiver_port}/hook", "events": ["consent.changed"]}
        try:
            subscription_id = post(service, manager, "/v1/webhooks/subscriptions", subscription)["id"]
        except urllib.error.HTTPError:
            subscription_id = None  # a revision without outbound webhooks
        signer = Webhook(secret)
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        lines = []
        for i in range(args.events):
            body = json.dumps(event(i, args.kind, str(int(t0)), args.records), separators=(",", ":"))
            msg_id = f"msg_{i}"
            lines.append(f"{msg_id}\t{int(now.timestamp())}\t{signer.sign(msg_id, now, body)}\t{body}")
        messages = service.tmp / "messages.tsv"
        messages.write_text("\n".join(lines) + "\n")
        script = service.tmp / "inbound.lua"
        script.write_text(LUA)
        app0, pg0 = service.cpu()
        # The duration is an upper bound: the script stops after the last message. Every message must be sent
        # within the signatures' 5-minute tolerance.
        finished = service.tmp / "finished"
        wrk = subprocess.Popen(
            [
                "wrk",
                "-t1",
                f"-c{args.connections}",
                "-d290s",
                "--timeout",
                "30s",  # wrk's default 2 s drops a slow answer uncounted, and the script would never finish
                "--latency",
                "-s",
                str(script),
                f"http://127.0.0.1:{service.port}",
                "--",
                str(messages),
                str(finished),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        while wrk.poll() is None and not finished.exists():
            time.sleep(0.05)
        app1, pg1 = service.cpu()
        wrk.send_signal(signal.SIGINT)
        run = wrk.communicate(timeout=60)[0]
        # wrk's own clock runs to its duration; the log's clock says when the first and last event were taken.
        admin = service.key("audit:read")
        export = urllib.request.Request(
            f"http://127.0.0.1:{service.port}/v1/audit/export?action=webhook.received",
            headers={"Authorization": f"Bearer {admin}"},
        )
        with urllib.request.urlopen(export) as response:
            taken = [json.loads(line)["at"] for line in response.read().splitlines()[:-1]]
        first, last = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (min(taken), max(taken)))
        dead = wait_drained(service, manager, subscription_id, timeout=600) if subscription_id else 0
        receiver.terminate()
        receiver.wait(30)
        received = json.loads(latencies_file.read_text())
    if "requests in" not in run:
        sys.exit(f"wrk printed no summary:\n{run[-2000:]}")
    latencies = sorted(received["latencies"])
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", run)
    return {
        "events": len(taken),
        "rate": len(taken) / max((last - first).total_seconds(), 0.001),
        "p50": re.search(r"50%\s+([\d.]+\w+)", run).group(1),
        "p99": re.search(r"99%\s+([\d.]+\w+)", run).group(1),
        "non2xx": int(bad.group(1)) if bad else 0,
        "app_us": (app1 - app0) * 1e6 / max(len(taken), 1),
        "pg_us": (pg1 - pg0) * 1e6 / max(len(taken), 1),
        "latencies": latencies,
        "drained_after": received["last_arrival"] - last.timestamp() if latencies else None,
        "dead": dead,
    }


def report(args: argparse.Namespace, r: dict) -> None:
    print(f"inbound bench: {args.kind}, {args.workers} workers, wrk 1 thread {args.connections} connections")
    per_event = 4 if args.kind == "tcf" else args.records
    print(
        f"events         {r['events']:,.0f}: {r['rate']:,.0f} events/s (target 5,000), "
        f"{r['rate'] * per_event:,.0f} records/s ({per_event} per event)"
    )
    print(f"latency        p50 {r['p50']}  p99 {r['p99']}  non-2xx {r['non2xx']}")
    latencies = r["latencies"]
    if latencies:
        print(
            f"write->delivery {len(latencies):,} delivered: p50 {pct(latencies, 50):,.0f} ms  "
            f"p99 {pct(latencies, 99):,.0f} ms  max {latencies[-1] * 1000:,.0f} ms (target p99 1,000 ms); "
            f"the last {r['drained_after']:.1f} s after the last event was taken; dead letters {r['dead']}"
        )
    print(f"CPU per event  service {r['app_us']:.0f} us  postgres {r['pg_us']:.0f} us")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--kind", choices=["records", "tcf"], default="records")
    ap.add_argument(
        "--records", type=int, default=1, help="records per consent.records event, each for its own subject"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--database-url", help="external PostgreSQL instead of the embedded one")
    ap.add_argument("--before", help="also run this git revision, interleaved, and compare")
    ap.add_argument("--rounds", type=int, default=3, help="with --before: runs of each")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    if not args.before:
        result = one_run(args)
        report(args, result)
        return 1 if result["non2xx"] else 0
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    with checkout(args.before) as before:
        variants = {"before": before, "after": (None, None)}
        for n in range(args.rounds):
            for name in ("before", "after") if n % 2 == 0 else ("after", "before"):
                r = one_run(args, *variants[name])
                runs[name].append(r)
                print(
                    f"round {n + 1} {name:<6} {r['rate']:>6,.0f} events/s  CPU per event service {r['app_us']:,.0f} us "
                    f"postgres {r['pg_us']:,.0f} us  non-2xx {r['non2xx']}",
                    flush=True,
                )
    for name, rs in runs.items():
        print(
            f"{name:<6} median {statistics.median(r['rate'] for r in rs):>6,.0f} events/s  CPU per event service "
            f"{statistics.median(r['app_us'] for r in rs):,.0f} us  postgres {statistics.median(r['pg_us'] for r in rs):,.0f} us"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
