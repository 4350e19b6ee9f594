"""A local webhook receiver on 127.0.0.1: records what it is sent, answers what the test scripts."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Callable


class Receiver:
    """`answers(n)` gives the status of the n-th request (0-based); 200 unless told otherwise."""

    def __init__(self, answers: Callable[[int], int] = lambda n: 200, delay: float = 0) -> None:
        self.answers = answers
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver would

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    n = len(outer.received)
                    outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(delay)  # a receiver that takes its time to answer
                self.send_response(outer.answers(n))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self, status: int | None = 200) -> list[dict]:
        """The bodies of requests answered `status` (None: all), in the order they arrived."""
        with self.lock:
            return [
                json.loads(body)
                for n, (_, body) in enumerate(self.received)
                if status is None or self.answers(n) == status
            ]

    async def wait_for(self, count: int, status: int | None = 200, timeout: float = 15) -> list[dict]:
        """Waits without blocking the event loop: the service's sender may share it (the test client's app)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.events(status)
            if len(got) >= count:
                return got
            await asyncio.sleep(0.05)
        raise AssertionError(f"{len(self.events(status))} of {count} deliveries arrived in {timeout} s")
