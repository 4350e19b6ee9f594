"""Consent-check benchmark: single-check throughput against hello-world, and the 10,000-item batch.

    make bench-check                       # 2 workers, 32 connections, 20 s per run, 100,000 subjects
    make bench-check ARGS="--before REV"   # REV and this checkout, interleaved, 3 rounds
    .venv/bin/python bench/check.py --seconds 10 --subjects 20000 --database-url postgresql://...

Starts `consent-svc serve` once (embedded PostgreSQL in a fresh temp directory unless --database-url),
seeds --subjects distinct subjects with a personalization record each (two thirds granted), then loads from
wrk on loopback (1 thread, --connections): `GET /health/live` of the same service (hello-world beside the
check route: same process, same middleware), `POST /v1/decisions` with a random seeded subject per request,
and a bare Litestar hello-world app on granian with the same worker count (the stack's ceiling). Then posts
--batches batches of 10,000 checks and times each (client wall, including JSON on both sides).

Prints requests/s, p50 and p99 of each, the check's ratio to both hellos, the CPU per check of the service
and of PostgreSQL, and the batch times. Needs wrk (apt-get install -y wrk).

--before REV checks REV out into a temporary git worktree and runs it from there (PYTHONPATH wins over the
editable install), alternating with this checkout for --rounds runs each, every run as above (its own
service and temp database); then prints the medians of the headline figures of each side and after/before.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, Service, add_compare_options, free_port, pct, run_or_compare

HELLO_APP = """from litestar import Litestar, get
@get("/")
async def hello() -> dict:
    return {"hello": "world"}
app = Litestar([hello])
"""
SOURCE = {"system": "bench", "touchpoint": "web", "method": "banner", "notice": {"id": "n", "version": "1"}}


def wrk(url: str, connections: int, seconds: int, script: str | None = None) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        args += ["-s", script]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=seconds + 60).stdout

    def latency(label: str) -> float:
        value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),
        "p50": latency("50%"),
        "p99": latency("99%"),
        "non2xx": float(bad.group(1)) if bad else 0.0,
    }


def post(port: int, key: str, path: str, body: bytes) -> tuple[int, bytes, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("POST", path, body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - t0
    conn.close()
    return response.status, data, elapsed


def seed(port: int, key: str, tag: str, subjects: int) -> None:
    for start in range(0, subjects, 5000):
        records = [
            {
                "subject": {"identifiers": [{"type": "email", "value": f"s{i}-{tag}@example.com"}]},
                "purpose": "personalization",
                "status": "granted" if i % 3 else "withdrawn",
                "collected_at": "2026-01-01T00:00:00Z",
                "region": "FR",
                "source": SOURCE,
            }
            for i in range(start, min(start + 5000, subjects))
        ]
        status, data, _ = post(port, key, "/v1/consents", json.dumps({"records": records}).encode())
        if status != 201:
            sys.exit(f"seeding failed: {status} {data[:300]!r}")


def check_script(directory: Path, key: str, tag: str, subjects: int) -> str:
    path = directory / "check.lua"
    path.write_text(
        f"""math.randomseed(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
request = function()
  local i = math.random(0, {subjects - 1})
  local body = '{{"subject":{{"identifiers":[{{"type":"email","value":"s' .. i .. '-{tag}@example.com"}}]}},'
    .. '"purpose":"personalization","region":"FR","context":{{"gpc":false}}}}'
  return wrk.format(nil, "/v1/decisions", nil, body)
end
"""
    )
    return str(path)


def bare_hello(workers: int, connections: int, seconds: int) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="consent-svc-hello-"))
    (directory / "hello.py").write_text(HELLO_APP)
    port = free_port()
    granian = ROOT / ".venv" / "bin" / "granian"
    process = subprocess.Popen(
        [
            str(granian),
            "--interface",
            "asgi",
            "--workers",
            str(workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "hello:app",
        ],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(3)
        return wrk(f"http://127.0.0.1:{port}/", connections, seconds)
    finally:
        os.killpg(process.pid, 15)
        process.wait()
        shutil.rmtree(directory, ignore_errors=True)


# The headline figures compared with --before: (key of one_run's result, label, format).
FIGURES = [
    ("rps", "check req/s", ",.0f"),
    ("ratio_service", "check/hello(service)", ".2f"),
    ("ratio_bare", "check/hello(bare)", ".2f"),
    ("p50", "check p50 ms", ".2f"),
    ("p99", "check p99 ms", ".2f"),
    ("app_us", "CPU/check service us", ".0f"),
    ("pg_us", "CPU/check postgres us", ".0f"),
    ("batch_ms", "batch 10,000 p50 ms", ".0f"),
]


def one_run(args: argparse.Namespace, command: list[str] | None = None, env: dict | None = None) -> dict:
    """A fresh service (of this checkout, or `command` with `env` for an older one), seeded and measured."""
    tag = secrets.token_hex(4)
    with Service(args.workers, args.database_url, command, env) as service:
        admin, engine = service.key("admin"), service.key("decisions:check")
        t0 = time.perf_counter()
        seed(service.port, admin, tag, args.subjects)
        print(f"seeded {args.subjects} subjects in {time.perf_counter() - t0:.1f} s", flush=True)
        base = f"http://127.0.0.1:{service.port}"
        hello = wrk(f"{base}/health/live", args.connections, args.seconds)
        app0, pg0 = service.cpu()
        check = wrk(
            base, args.connections, args.seconds, check_script(service.tmp, engine, tag, args.subjects)
        )
        app1, pg1 = service.cpu()

        batch_times, bad_batches = [], 0
        for b in range(args.batches):
            items = [
                {
                    "subject": {
                        "identifiers": [
                            {
                                "type": "email",
                                "value": f"s{(b * 10_000 + i) % args.subjects}-{tag}@example.com",
                            }
                        ]
                    },
                    "purpose": "personalization",
                    "region": "FR",
                    "context": {"gpc": False},
                }
                for i in range(10_000)
            ]
            status, data, elapsed = post(
                service.port, engine, "/v1/decisions/batch", json.dumps({"items": items}).encode()
            )
            ok = status == 200 and len(json.loads(data)["results"]) == 10_000
            bad_batches += not ok
            batch_times.append(elapsed)
        external = service.pgdata is None
    # The bare app is the same for both sides of a --before run: it shows how far the machine drifted.
    bare = bare_hello(args.workers, args.connections, args.seconds)
    per = 1e6 / check["requests"]
    times = sorted(batch_times)
    return {
        "hello": hello,
        "bare": bare,
        "check": check,
        "external": external,
        "batch_times": times,
        "bad_batches": bad_batches,
        "rps": check["rps"],
        "ratio_service": check["rps"] / hello["rps"],
        "ratio_bare": check["rps"] / bare["rps"],
        "p50": check["p50"],
        "p99": check["p99"],
        "app_us": (app1 - app0) * per,
        "pg_us": (pg1 - pg0) * per,
        "batch_ms": pct(times, 50),
        "failed": bool(bad_batches or check["non2xx"]),
    }


def report(args: argparse.Namespace, r: dict) -> None:
    db = "external PostgreSQL" if args.database_url else "embedded PostgreSQL"
    print(
        f"check bench: {args.workers} workers, wrk 1 thread {args.connections} connections {args.seconds} s, {db}"
    )
    for label, run in (("hello (service)", r["hello"]), ("hello (bare)", r["bare"]), ("check", r["check"])):
        print(
            f"{label:<16} {run['rps']:>9,.0f} req/s  p50 {run['p50']:6.2f} ms  p99 {run['p99']:6.2f} ms"
            f"  non-2xx {run['non2xx']:.0f}"
        )
    print(
        f"ratio            check/hello(service) {r['ratio_service']:.2f}  check/hello(bare) {r['ratio_bare']:.2f}"
    )
    print(
        f"CPU per check    service {r['app_us']:.0f} us  postgres {r['pg_us']:.0f} us"
        + (" (external, not measured)" if r["external"] else "")
    )
    times = r["batch_times"]
    print(
        f"batch 10,000     {len(times)} runs: p50 {pct(times, 50):.0f} ms  min {times[0] * 1000:.0f} ms  max {times[-1] * 1000:.0f} ms"
        f"  failed {r['bad_batches']}",
        flush=True,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--subjects", type=int, default=100_000)
    ap.add_argument("--batches", type=int, default=10, help="10,000-item batches to time")
    ap.add_argument("--database-url", help="external PostgreSQL instead of the embedded one")
    add_compare_options(ap)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install -y wrk")
    return run_or_compare(args, one_run, report, FIGURES, "pg_us", "check bench")


if __name__ == "__main__":
    sys.exit(main())
