"""A fixed-rate (open-loop) HTTPS client, wrk2-style: request i is due at t0 + i/rate whatever happened
before, and its latency is measured from that due time (so a stalled server is not hidden by the client
waiting for it: no coordinated omission). Keep-alive connections are opened before the clock starts.

    python -m tests.support.openloop --port P --ca-file CA --manifest M --rate 500 --duration 10 --connections 16

Prints one JSON line. Bounded: exactly rate*duration requests, and a hard deadline of duration + 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from pathlib import Path

from tests.support.stats import percentile


def load_requests(manifest: Path, host: str, port: int) -> list[bytes]:
    found = []
    for line in manifest.read_text().splitlines():
        if line.strip():
            body = Path(line.strip()).read_bytes()
            head = (
                f"POST /mutate HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            found.append(head + body)
    return found


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def run(args: argparse.Namespace) -> dict[str, object]:
    context = ssl.create_default_context(cafile=args.ca_file)
    requests = load_requests(Path(args.manifest), args.host, args.port)
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(args.connections):
        reader, writer = await asyncio.open_connection(args.host, args.port, ssl=context)
        writer.write(requests[0])  # warm each connection (TLS session, server thread) once
        await writer.drain()
        await read_response(reader)
        pool.put_nowait((reader, writer))
    loop = asyncio.get_running_loop()
    total = int(args.rate * args.duration)
    latencies: list[float] = []
    send_lag: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []

    async def one(index: int, due: float) -> None:
        reader, writer = await pool.get()
        try:
            writer.write(requests[index % len(requests)])
            await writer.drain()
            status = await read_response(reader)
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(loop.time() - due)
        except (OSError, asyncio.IncompleteReadError, ValueError) as error:
            errors.append(type(error).__name__)
            reader, writer = await asyncio.open_connection(args.host, args.port, ssl=context)
        finally:
            pool.put_nowait((reader, writer))

    tasks = []
    start = loop.time() + 0.05
    wall_start = time.perf_counter()
    for index in range(total):
        due = start + index / args.rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        send_lag.append(max(0.0, loop.time() - due))
        tasks.append(asyncio.create_task(one(index, due)))
    _done, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - wall_start
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    latencies.sort()
    send_lag.sort()
    ms = 1000.0
    return {
        "rate_target": args.rate,
        "requests_sent": total,
        "requests_ok": statuses.get(200, 0),
        "statuses": {str(key): value for key, value in statuses.items()},
        "errors": len(errors) + len(pending),
        "achieved_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * ms, 3),
        "p90_ms": round(percentile(latencies, 0.90) * ms, 3),
        "p99_ms": round(percentile(latencies, 0.99) * ms, 3),
        "p999_ms": round(percentile(latencies, 0.999) * ms, 3),
        "max_ms": round((latencies[-1] if latencies else float("nan")) * ms, 3),
        "client_send_lag_p99_ms": round(percentile(send_lag, 0.99) * ms, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    result = asyncio.run(asyncio.wait_for(run(args), timeout=args.duration + 60))
    print("OPENLOOP " + json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
