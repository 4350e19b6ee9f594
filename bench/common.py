"""What the benchmarks share: start `consent-svc serve` on a fresh data directory, make a key, measure CPU;
run an older revision beside this checkout and compare."""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / ".venv" / "bin" / "consent-svc"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int) -> None:
    """Until something (a receiver process) listens on 127.0.0.1:port; exit after 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit("the receiver did not start")


def pct(sorted_values: list[float], p: float) -> float:
    """The p-th percentile of seconds, in milliseconds."""
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)] * 1000


def postmasters(pgdata: Path | None) -> list[psutil.Process]:
    """The embedded server runs detached from serve (its parent is init): find it by its data directory."""
    return [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if pgdata and p.info["name"] == "postgres" and str(pgdata) in " ".join(p.info["cmdline"] or [])
    ]


def cpu_seconds(roots: list[psutil.Process]) -> float:
    """User+system CPU seconds of these processes and their descendants, with the children they reaped."""
    procs: dict[int, psutil.Process] = {}
    for root in roots:
        with suppress(psutil.NoSuchProcess):
            procs.update((p.pid, p) for p in (root, *root.children(recursive=True)))
    total = 0.0
    for p in procs.values():
        with suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


class Service:
    """`consent-svc serve` on a free port: embedded PostgreSQL in a temp directory unless a database URL is
    given. Use as a context manager; `key(scope)` makes an API key with the CLI."""

    def __init__(
        self,
        workers: int,
        database_url: str | None = None,
        command: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        """`command` replaces `.venv/bin/consent-svc` (e.g. an older checkout run with python -m)."""
        self.command = command or [str(CLI)]
        self.tmp = Path(tempfile.mkdtemp(prefix="consent-svc-bench-"))
        self.env = {
            "CONSENT_SVC_LOG_LEVEL": "WARNING",
            **os.environ,
            "CONSENT_SVC_DATA_DIR": str(self.tmp / "data"),
            **(extra_env or {}),
        }
        self.env.pop("DATABASE_URL", None)
        self.pgdata = None if database_url else (self.tmp / "data" / "pg").resolve()
        if database_url:
            self.env["DATABASE_URL"] = database_url
            for name in ("CONSENT_SVC_MASTER_KEY", "CONSENT_SVC_LOOKUP_SECRET"):
                self.env[name] = base64.b64encode(os.urandom(32)).decode()
        self.workers = workers
        self.port = free_port()

    def __enter__(self) -> Service:
        self.log = open(self.tmp / "serve.log", "wb")
        self.process = subprocess.Popen(
            [
                *self.command,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ],
            env=self.env,
            cwd=self.tmp,  # not the checkout: `python -m` and granian's workers put the cwd first on sys.path
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.tmp / "serve.log").read_text()[-3000:]  # before __exit__ removes the directory
                self.__exit__()
                sys.exit(f"service did not become ready; log:\n{log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        try:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for leftover in postmasters(self.pgdata):  # normally stopped by serve on exit; not if it was killed
            leftover.terminate()
            psutil.wait_procs([leftover], timeout=30)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def key(self, scope: str) -> str:
        made = subprocess.run(
            [*self.command, "keys", "create", "--name", "bench", "--scope", scope],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
        )
        if made.returncode:
            sys.exit(f"consent-svc keys create failed:\n{made.stderr[-3000:]}")
        return json.loads(made.stdout)["key"]

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of the service's process tree and of its embedded PostgreSQL."""
        return cpu_seconds([psutil.Process(self.process.pid)]), cpu_seconds(postmasters(self.pgdata))


@contextmanager
def checkout(revision: str) -> Iterator[tuple[list[str], dict[str, str]]]:
    """An older revision in a temporary git worktree: the `command` and `extra_env` that make Service run it
    (PYTHONPATH wins over the editable install of the current checkout; Service runs in its temp directory,
    else the checkout, as the cwd, would win over PYTHONPATH)."""
    worktree = Path(tempfile.mkdtemp(prefix="consent-svc-before-"))
    subprocess.run(
        ["git", "worktree", "add", "-f", "--detach", str(worktree), revision], cwd=ROOT, check=True
    )
    try:
        yield [str(ROOT / ".venv" / "bin" / "python"), "-m", "consent_svc.cli"], {"PYTHONPATH": str(worktree)}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)
        shutil.rmtree(worktree, ignore_errors=True)


def interleaved(
    revision: str, rounds: int, run: Callable[[list[str] | None, dict[str, str] | None], dict]
) -> dict[str, list[dict]]:
    """`run(command, extra_env)` for `revision` and for this checkout, `rounds` times each, interleaved
    (before, after, then after, before, ...): this machine's throughput drifts by up to 2x within minutes, and
    the alternation spreads that over both sides. Each run starts its own service: rounds are independent."""
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    with checkout(revision) as before:
        variants = {"before": before, "after": (None, None)}
        for n in range(rounds):
            for name in ("before", "after") if n % 2 == 0 else ("after", "before"):
                which = revision if name == "before" else "this checkout"
                print(f"--- round {n + 1} {name} ({which})", flush=True)
                runs[name].append(run(*variants[name]))
    return runs


def comparison(runs: dict[str, list[dict]], figures: list[tuple[str, str, str]]) -> None:
    """Per figure (key, label, format spec): the median of the before and of the after runs, and after/before
    as a ratio and a percent change."""
    width = max(len(label) for _, label, _ in figures)
    heading = f"median of {len(runs['after'])} runs"
    print(f"{heading:<{width}}  {'before':>10}  {'after':>10}  after/before")
    for key, label, spec in figures:
        before, after = (statistics.median(r[key] for r in runs[name]) for name in ("before", "after"))
        change = f"{after / before:6.3f}  {after / before - 1:+7.1%}" if before else "     -"
        print(f"{label:<{width}}  {before:>10{spec}}  {after:>10{spec}}  {change}")


def add_compare_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--before", help="also run this git revision, interleaved, and compare")
    ap.add_argument("--rounds", type=int, default=3, help="with --before: runs of each")


def run_or_compare(
    args: argparse.Namespace,
    one_run: Callable[..., dict],
    report: Callable[[argparse.Namespace, dict], None],
    figures: list[tuple[str, str, str]],
    pg_figure: str,
    name: str,
) -> int:
    """One run, or with --before the interleaved rounds and the comparison of their medians; 1 if a run failed.
    `pg_figure`: the key of PostgreSQL's CPU, left out with --database-url (an external server is not measured:
    its row would compare zeros)."""

    def run(command: list[str] | None = None, env: dict[str, str] | None = None) -> dict:
        result = one_run(args, command, env)
        report(args, result)
        return result

    if not args.before:
        return 1 if run()["failed"] else 0
    runs = interleaved(args.before, args.rounds, run)
    print(f"{name}: before = {args.before}, after = this checkout, {args.rounds} rounds")
    comparison(runs, [f for f in figures if not (args.database_url and f[0] == pg_figure)])
    return 1 if any(r["failed"] for side in runs.values() for r in side) else 0
