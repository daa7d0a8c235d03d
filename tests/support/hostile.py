"""Hostile clients for the stall tests and benchmarks: many connections that hold the server without ever
completing a request, reconnecting whenever the server closes one.

    python -m tests.support.hostile --port P --ca-file CA --connections 1000 --duration 20

Modes, spread evenly over the connections: `raw` (TCP, one byte of a TLS record, then nothing), `idle`
(TLS handshake, then nothing), `half-line` (half a request line, then nothing), `dribble` (a request
whose headers arrive one byte every 0.5 s), `slow-body` (headers, then a body that never completes).
Prints one JSON line: connections opened, closed by the server, the most held at once, answers seen.
Bounded: it stops after `duration` seconds whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
from dataclasses import dataclass, field

MODES = ("raw", "idle", "half-line", "dribble", "slow-body")


@dataclass
class Tally:
    opened: int = 0
    closed_by_server: int = 0
    held_now: int = 0
    held_max: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    connect_errors: int = 0


async def _hold(mode: str, host: str, port: int, context: ssl.SSLContext, tally: Tally, stop: asyncio.Event) -> None:
    """One attacker: connect, misbehave until the server closes the connection, then start again."""
    while not stop.is_set():
        try:
            if mode == "raw":
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(b"\x16")
            else:
                reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            tally.connect_errors += 1
            await asyncio.sleep(0.2)
            continue
        tally.opened += 1
        tally.held_now += 1
        tally.held_max = max(tally.held_max, tally.held_now)
        try:
            if mode == "half-line":
                writer.write(b"POST /mutate HTTP/1.1\r\nHost: x")
            elif mode == "slow-body":
                writer.write(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
            await writer.drain()
            reading = asyncio.ensure_future(reader.read(200))
            dribble = b"POST /mutate HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
            position = 0
            while not stop.is_set() and not reading.done():
                if mode == "dribble":
                    writer.write(dribble[position : position + 1])
                    position = (position + 1) % len(dribble)
                    with contextlib.suppress(OSError, ssl.SSLError):
                        await writer.drain()
                await asyncio.wait([reading], timeout=0.5)
            if reading.done():
                answer = reading.result() if not reading.exception() else b""
                tally.closed_by_server += 1
                key = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"
                tally.answers[key] = tally.answers.get(key, 0) + 1
            else:
                reading.cancel()
        except (OSError, ssl.SSLError, ConnectionError):
            tally.closed_by_server += 1
            tally.answers["reset"] = tally.answers.get("reset", 0) + 1
        finally:
            tally.held_now -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)


async def attack(host: str, port: int, ca_file: str, connections: int, duration: float) -> Tally:
    """Run `connections` attackers for `duration` seconds."""
    context = ssl.create_default_context(cafile=ca_file)
    tally = Tally()
    stop = asyncio.Event()
    tasks = []
    for index in range(connections):
        tasks.append(asyncio.create_task(_hold(MODES[index % len(MODES)], host, port, context, tally, stop)))
        if index % 50 == 49:
            await asyncio.sleep(0.05)  # do not trip the listen backlog: a hostile client would not, either
    await asyncio.sleep(duration)
    stop.set()
    await asyncio.wait(tasks, timeout=10)
    for task in tasks:
        task.cancel()
    return tally


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args()
    tally = asyncio.run(attack(args.host, args.port, args.ca_file, args.connections, args.duration))
    print("HOSTILE " + json.dumps(vars(tally)), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
