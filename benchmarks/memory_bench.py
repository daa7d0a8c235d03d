"""Section 4: resident memory of each webhook worker idle, after a warm-up, and after 100k requests.

A fresh server (2 asyncio workers, as served) is driven by wrk at c=32 with the same review mix, in
chunks of a fixed request count (wrk stops itself after N responses; each chunk is also bounded in time).
RSS (VmRSS) and PSS are read from /proc between chunks. Growth is reported against the post-warm-up
figure (a leak keeps growing after warm-up; imports and caches filled by the first requests do not).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ensure_tool, log, pss_kib, rss_kib
from benchmarks.load import run_wrk
from benchmarks.reviews import review_mix, write_bodies
from benchmarks.servers import Server, make_certs, start_floor, start_ours

WARMUP_REQUESTS = 2000
CONNECTIONS = 32


def snapshot(server: Server, requests_so_far: int) -> dict[str, Any]:
    workers = server.worker_pids()
    return {
        "requests": requests_so_far,
        "rss_kib": {str(pid): rss_kib(pid) for pid in workers},
        "pss_kib": {str(pid): pss_kib(pid) for pid in workers},
        "arbiter_rss_kib": rss_kib(server.process.pid),
    }


def run(out_dir: Path, *, total_requests: int, chunks: int, chunk_time_cap_s: float) -> dict[str, Any]:
    if ensure_tool("wrk", "wrk") is None:
        return {"skipped": "wrk is not installed and could not be installed"}
    work = Path(tempfile.mkdtemp(prefix="wkw-bench-mem-"))
    try:
        certs = make_certs(work / "certs")
        manifest = write_bodies(work / "bodies", review_mix())
        floor = start_floor(certs, out_dir / "logs")
        try:
            floor_idle = snapshot(floor, 0)
        finally:
            floor.stop()
        server = start_ours(certs, out_dir / "logs")
        try:
            initial_workers = server.worker_pids()
            points = [snapshot(server, 0)]
            log(f"section 4: warm-up {WARMUP_REQUESTS} requests")
            warm = run_wrk(server, manifest, connections=CONNECTIONS, duration_s=120, stop_after_total=WARMUP_REQUESTS)
            done = warm["requests"]
            points.append(snapshot(server, done))
            per_chunk = total_requests // chunks
            errors = warm["errors"]
            for _ in range(chunks):
                chunk = run_wrk(
                    server, manifest, connections=CONNECTIONS, duration_s=chunk_time_cap_s, stop_after_total=per_chunk
                )
                done += chunk["requests"]
                errors += chunk["errors"]
                points.append(snapshot(server, done))
                log(f"  {done} requests: worker RSS {points[-1]['rss_kib']} KiB ({chunk['rps']} req/s)")
            restarted = server.worker_pids() != initial_workers
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    idle, warmed, final = points[0], points[1], points[-1]

    def growth(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for pid, value in after["rss_kib"].items():
            start = before["rss_kib"].get(pid)
            out[pid] = round(100 * (value - start) / start, 2) if value and start else None
        return out

    growth_after_warmup = growth(warmed, final)
    worst = max((value for value in growth_after_warmup.values() if value is not None), default=None)
    return {
        "connections": CONNECTIONS,
        "requests_measured": done - warmed["requests"],
        "requests_total": done,
        "errors": errors,
        "workers_restarted": restarted,
        "floor_idle_rss_kib": floor_idle["rss_kib"],
        "points": points,
        "idle_rss_kib": idle["rss_kib"],
        "warm_rss_kib": warmed["rss_kib"],
        "final_rss_kib": final["rss_kib"],
        "growth_pct_from_warm": growth_after_warmup,
        "growth_pct_from_idle": growth(idle, final),
        "worst_growth_pct_from_warm": worst,
    }
