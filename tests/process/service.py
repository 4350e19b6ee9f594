"""The service as a real process (`consent-svc serve`), for tests that kill it or restart it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import LOOKUP_SECRET, MASTER_KEY

CLI = str(Path(sys.executable).parent / "consent-svc")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, env: dict[str, str], data_dir: Path, workers: int = 1):
        self.env = {**os.environ, **env, "CONSENT_SVC_DATA_DIR": str(data_dir)}
        if "DATABASE_URL" not in env:
            self.env.pop("DATABASE_URL", None)
        self.data_dir, self.workers, self.port = data_dir, workers, free_port()
        self.proc: subprocess.Popen | None = None
        self.log = open(data_dir / "service.log", "ab")  # noqa: SIM115

    def cli(self, *args: str) -> str:
        result = subprocess.run([CLI, *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    def start(self, timeout: float = 60) -> Service:
        self.proc = subprocess.Popen(
            [CLI, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"service exited with {self.proc.returncode}:\n{self.log_tail()}"
            try:
                if self.call("GET", "/health/ready")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"service not ready:\n{self.log_tail()}")

    def log_tail(self, all_of_it: bool = False) -> str:
        self.log.flush()
        text = (self.data_dir / "service.log").read_text(errors="replace")
        return text if all_of_it else text[-3000:]

    def kill9_under_load(
        self, work: Callable[[threading.Event, str], None], threads: int, rounds: int = 3
    ) -> None:
        """`rounds` times: `threads` callers run work(stop, tag) for a second, then the service is killed -9 with
        calls in flight, and restarted."""
        for round_ in range(rounds):
            stop = threading.Event()
            callers = [threading.Thread(target=work, args=(stop, f"r{round_}t{t}")) for t in range(threads)]
            for caller in callers:
                caller.start()
            time.sleep(1.0)
            self.kill9()
            stop.set()
            for caller in callers:
                caller.join()
            self.start()

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def key(self, *scopes: str) -> str:
        args = ["keys", "create", "--name", "test"]
        for scope in scopes:
            args += ["--scope", scope]
        return json.loads(self.cli(*args))["key"]

    def call(self, method: str, path: str, body=None, key: str | None = None, timeout: float = 30):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Bearer {key}"} if key else {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")


@contextmanager
def running(db_url: str, data_dir: Path, workers: int = 2, **settings: str) -> Iterator[Service]:
    """The service started on the test's database with the suite's keys, and stopped after; `settings`: more
    of its environment (CONSENT_SVC_MODE="local", ...)."""
    env = {
        "DATABASE_URL": db_url,
        "CONSENT_SVC_MASTER_KEY": MASTER_KEY,
        "CONSENT_SVC_LOOKUP_SECRET": LOOKUP_SECRET,
        **settings,
    }
    service = Service(env, data_dir, workers)
    try:
        yield service.start()
    finally:
        service.stop()
