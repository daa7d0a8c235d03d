"""Drive load: wrk (closed loop, keep-alive, Lua script posting real reviews) and the open-loop client."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_DIR, REPO_ROOT, cpu_seconds
from benchmarks.servers import Server

LUA_SCRIPT = BENCH_DIR / "post_reviews.lua"


def worker_cpu(server: Server) -> float:
    return sum(cpu_seconds(pid) or 0.0 for pid in [server.process.pid, *server.worker_pids()])


def _run_wrk_process(argv: list[str], threads_to_finish: int, timeout_s: float) -> tuple[str, str, int]:
    """Run wrk; with a request bound, SIGINT it as soon as every thread said WRKTHREADDONE (wrk's main
    thread otherwise sleeps out the whole -d duration), which still prints the summary and done()."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    timer = threading.Timer(timeout_s, process.kill)
    timer.start()
    try:
        lines = []
        finished = 0
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if threads_to_finish and line.startswith("WRKTHREADDONE"):
                finished += 1
                if finished == threads_to_finish:
                    process.send_signal(signal.SIGINT)
        stderr = process.stderr.read() if process.stderr else ""
        returncode = process.wait()
    finally:
        timer.cancel()
    return "".join(lines), stderr, returncode


def run_wrk(
    server: Server,
    manifest: Path,
    *,
    connections: int,
    duration_s: float,
    stop_after_total: int = 0,
    threads: int | None = None,
) -> dict[str, Any]:
    """One wrk run; returns its numbers (latency in ms) plus the server's CPU time per request."""
    threads = threads or max(1, min(2, connections))
    per_thread = -(-stop_after_total // threads) if stop_after_total else 0
    argv = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        f"{server.url}/mutate",
        "--",
        str(manifest),
        str(per_thread),
    ]
    cpu_before = worker_cpu(server)
    stdout, stderr, returncode = _run_wrk_process(argv, threads if stop_after_total else 0, duration_s + 60)
    cpu_used = worker_cpu(server) - cpu_before
    line = next((line for line in stdout.splitlines() if line.startswith("WRKJSON ")), None)
    if returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({returncode}): {stdout[-800:]} {stderr[-800:]}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[key] for key in raw if key.startswith("errors_"))
    return {
        "connections": connections,
        "threads": threads,
        "duration_s": round(seconds, 2),
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds, 1) if seconds else None,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "p999_ms": raw["p999_us"] / 1000,
        "mean_ms": round(raw["lat_mean_us"] / 1000, 3),
        "max_ms": raw["lat_max_us"] / 1000,
        "errors": errors,
        "errors_detail": {key: raw[key] for key in raw if key.startswith("errors_") and raw[key]},
        "server_cpu_ms_per_request": round(cpu_used * 1000 / raw["requests"], 3) if raw["requests"] else None,
    }


def run_open_loop(
    server: Server, manifest: Path, *, rate: float, duration_s: float, connections: int = 16
) -> dict[str, Any]:
    argv = [
        sys.executable,
        "-m",
        "tests.support.openloop",
        "--port",
        str(server.port),
        "--ca-file",
        str(server.certs.ca_file),
        "--manifest",
        str(manifest),
        "--rate",
        str(rate),
        "--duration",
        str(duration_s),
        "--connections",
        str(connections),
    ]
    cpu_before = worker_cpu(server)
    completed = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s + 90, check=False, cwd=REPO_ROOT
    )
    cpu_used = worker_cpu(server) - cpu_before
    line = next((line for line in completed.stdout.splitlines() if line.startswith("OPENLOOP ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"open-loop client failed ({completed.returncode}): {completed.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(line.removeprefix("OPENLOOP "))
    result["server_cpu_share_of_2_cores"] = round(cpu_used / duration_s / 2, 3)
    return result
