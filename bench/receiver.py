"""A webhook receiver for benchmarks: a bare asyncio HTTP/1.1 server that answers 204 at once (keep-alive) and
notes, per delivery, how long after the event's `timestamp` (the write's transaction time) it arrived.

    python bench/receiver.py PORT OUT.json    # on SIGTERM writes {"latencies": [s...], "last_arrival": unix s}
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import datetime

ANSWER = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


async def main(port: int, out: str) -> None:
    latencies: list[float] = []
    ids: set[str] = set()
    last = [0.0]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length, msg_id = 0, ""
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                    elif name.lower() == b"webhook-id":
                        msg_id = value.strip().decode()
                body = await reader.readexactly(length)
                arrived = last[0] = time.time()
                if msg_id not in ids:  # a repeat is not a second delivery
                    ids.add(msg_id)
                    latencies.append(
                        arrived - datetime.fromisoformat(json.loads(body)["timestamp"]).timestamp()
                    )
                writer.write(ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
        except asyncio.CancelledError:
            # Stopping with the delivery process's connections still open: asyncio cancels their handlers, and
            # a handler that ends cancelled is printed as an error at exit.
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        await stop.wait()
    with open(out, "w") as f:
        json.dump({"latencies": latencies, "last_arrival": last[0]}, f)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
