"""Section 1: the webhook under HTTPS load on loopback versus the floor server, plus where the time goes.

* closed loop (wrk, keep-alive) at each concurrency: p50/p90/p99 and the rate it sustains, ours and floor
  alternating (order flipped every repetition), each figure the median of the repetitions and the ratio
  ours/floor the median of the per-repetition ratios;
* open loop at a fixed 500 req/s (tests.support.openloop, latency from each request's due time), also
  while 1,000 hostile connections (tests.support.hostile: idle, dribbling, never-ending bodies) are held;
* in-process cost of `admission.review` per fixture pod and a cProfile of the mix;
* when a webhook target is missed, py-spy samples a worker under load and the hot frames are listed.
"""

from __future__ import annotations

import collections
import cProfile
import io
import json
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, ensure_tool, log, median, ratio
from benchmarks.load import run_open_loop, run_wrk, worker_cpu
from benchmarks.reviews import mix_summary, review_mix, write_bodies
from benchmarks.servers import Server, make_certs, start_floor, start_ours

METRICS = ("p50_ms", "p90_ms", "p99_ms", "rps", "server_cpu_ms_per_request")
OPEN_METRICS = ("p50_ms", "p90_ms", "p99_ms", "max_ms", "achieved_rps", "client_send_lag_p99_ms")


def summarise(runs: dict[str, list[dict[str, Any]]], metrics: tuple[str, ...]) -> dict[str, Any]:
    """Medians per server, and the median of the per-repetition ratios ours/floor."""
    out: dict[str, Any] = {}
    for name, samples in runs.items():
        out[name] = {metric: median([sample.get(metric) for sample in samples]) for metric in metrics}
        out[name]["errors"] = sum(sample.get("errors", 0) for sample in samples)
    for name in [name for name in runs if name != "floor"]:
        key = "ratio_ours_over_floor" if name == "ours" else f"ratio_{name.replace('-', '_')}_over_floor"
        out[key] = {
            metric: median(
                [ratio(a.get(metric), b.get(metric)) for a, b in zip(runs[name], runs["floor"], strict=False)]
            )
            for metric in metrics
        }
    out["repetitions"] = runs
    return out


def inprocess_costs(repeats: int = 5, loops: int = 40) -> dict[str, Any]:
    """`review()` wall time per fixture body in this process (no HTTP, no TLS), median of batches."""
    from webhook.admission.config import Settings
    from webhook.admission.review import review
    from webhook.server.namespaces import StaticNamespaces

    settings, namespaces = Settings(watch_namespaces=False), StaticNamespaces()
    seen: dict[str, Any] = {}
    for item in review_mix():
        if item.label in seen:
            continue
        outcome = review(item.body, namespaces, settings).outcome
        batches = []
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(loops):
                review(item.body, namespaces, settings)
            batches.append((time.perf_counter() - started) / loops * 1000)
        seen[item.label] = {"body_bytes": len(item.body), "outcome": outcome, "review_ms": round(median(batches), 3)}
    return seen


def inprocess_breakdown() -> dict[str, Any]:
    """Where `review()` spends its time over one pass of the mix (cProfile, cumulative, top 20)."""
    from webhook.admission.config import Settings
    from webhook.admission.review import review
    from webhook.server.namespaces import StaticNamespaces

    settings, namespaces = Settings(watch_namespaces=False), StaticNamespaces()
    mix = review_mix()
    for item in mix:
        review(item.body, namespaces, settings)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(50):
        for item in mix:
            review(item.body, namespaces, settings)
    profile.disable()
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (filename, line, function), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename.replace(str(REPO_ROOT) + "/", "")
        if "site-packages/" in short:
            short = short.split("site-packages/", 1)[1]
        elif "/lib/python3" in short:
            short = "stdlib/" + short.split("/lib/python3", 1)[1].split("/", 1)[-1]
        rows.append(
            {
                "function": f"{short}:{line}({function})",
                "calls": calls,
                "self_pct": round(100 * tottime / total, 1),
                "cumulative_pct": round(100 * cumtime / total, 1),
            }
        )
    rows.sort(key=lambda row: row["cumulative_pct"], reverse=True)
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(12)
    return {
        "reviews_profiled": 50 * len(mix),
        "top_cumulative": rows[:22],
        "top_self": sorted(rows, key=lambda row: row["self_pct"], reverse=True)[:12],
    }


def under_attack(server: Server, manifest: Path, *, rate: float, duration_s: float, reps: int) -> dict[str, Any]:
    """The open-loop figure while tests.support.hostile holds 1,000 connections that never complete a
    request (reconnecting whenever the server cuts one): every review must still be answered."""
    runs: list[dict[str, Any]] = []
    tallies: list[dict[str, Any]] = []
    rss_peak_mb = 0.0
    for _ in range(reps):
        command = [sys.executable, "-m", "tests.support.hostile", "--port", str(server.port)]
        command += ["--ca-file", str(server.certs.ca_file), "--connections", "1000", "--duration", str(duration_s + 12)]
        attackers = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(6)  # every attacker connected and misbehaving before the clock starts
            runs.append(run_open_loop(server, manifest, rate=rate, duration_s=duration_s))
            rss_peak_mb = max(rss_peak_mb, *(_rss_mb(pid) for pid in server.worker_pids()))
            out, _ = attackers.communicate(timeout=duration_s + 60)
        finally:
            if attackers.poll() is None:
                attackers.kill()
        line = next((line for line in out.splitlines() if line.startswith("HOSTILE ")), "HOSTILE {}")
        tallies.append(json.loads(line.removeprefix("HOSTILE ")))
    return {
        "hostile_connections": 1000,
        "held_max": max((tally.get("held_max", 0) for tally in tallies), default=0),
        "cut_by_server": sum(tally.get("closed_by_server", 0) for tally in tallies),
        "requests_sent": sum(run["requests_sent"] for run in runs),
        "requests_ok": sum(run["requests_ok"] for run in runs),
        "worker_rss_peak_mb": round(rss_peak_mb, 1),
        **{metric: median([run.get(metric) for run in runs]) for metric in OPEN_METRICS},
        "repetitions": runs,
    }


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def py_spy() -> str | None:
    from tests.support.venvs import ensure_venv

    try:
        python = ensure_venv("bench-py-spy", "3.11", ["py-spy==0.4.3"])
    except Exception as error:  # noqa: BLE001 - profiling is optional
        log(f"py-spy unavailable: {error}")
        return None
    binary = python.parent / "py-spy"
    return str(binary) if binary.exists() else None


def profile_under_load(server: Server, manifest: Path, work: Path, seconds: int = 10) -> dict[str, Any]:
    """py-spy samples every worker while wrk drives c=32; returns the hottest frames (self and inclusive)."""
    binary = py_spy()
    if binary is None:
        return {"skipped": "py-spy could not be installed from PyPI"}
    samplers = []
    for pid in server.worker_pids():
        for mode in ("gil", "all"):
            out = work / f"py-spy-{mode}-{pid}.txt"
            extra = ["--gil"] if mode == "gil" else []
            samplers.append(
                (
                    mode,
                    out,
                    subprocess.Popen(
                        [
                            binary,
                            "record",
                            "--pid",
                            str(pid),
                            "--duration",
                            str(seconds),
                            "--rate",
                            "100",
                            "--format",
                            "raw",
                            "--output",
                            str(out),
                            "--nonblocking",
                            *extra,
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    ),
                )
            )
    time.sleep(1.0)
    try:
        run_wrk(server, manifest, connections=32, duration_s=seconds)
    finally:
        problems = []
        for _, _, sampler in samplers:
            try:
                _, stderr = sampler.communicate(timeout=seconds + 60)
            except subprocess.TimeoutExpired:
                sampler.kill()
                _, stderr = sampler.communicate()
            if sampler.returncode != 0:
                problems.append(stderr.decode(errors="replace")[-300:])
    views: dict[str, Any] = {}
    for mode in ("gil", "all"):
        views[mode] = _aggregate([out for m, out, _ in samplers if m == mode])
    if not views["gil"].get("busy_samples") and not views["all"].get("busy_samples"):
        return {"skipped": "py-spy recorded no busy samples", "errors": problems}
    return {"holding_gil": views["gil"], "all_threads": views["all"], "errors": problems}


def _aggregate(outputs: list[Path]) -> dict[str, Any]:
    """Collapsed stacks -> share of busy samples per frame: self (leaf) and inclusive (anywhere in the stack)."""
    self_counts: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for out in outputs:
        if not out.exists():
            continue
        for line in out.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [frame for frame in stack.split(";") if frame]
            # idle workers wait in the event loop selector: keep only busy samples
            if frames and any(word in frames[-1] for word in ("select (", "poll (", "wait (", "_wait_for_tstate_lock")):
                continue
            total += count
            self_counts[_frame_name(frames[-1])] += count
            for name in {_frame_name(frame) for frame in frames}:
                inclusive[name] += count
    if total == 0:
        return {"busy_samples": 0}
    return {
        "busy_samples": total,
        "top_self": [
            {"frame": name, "pct": round(100 * count / total, 1)} for name, count in self_counts.most_common(15)
        ],
        "top_inclusive": [
            {"frame": name, "pct": round(100 * count / total, 1)}
            for name, count in inclusive.most_common(60)
            if not name.startswith(("Thread.", "_worker (", "_WorkItem.", "<module>", "run (", "start ("))
        ][:30],
    }


def _frame_name(frame: str) -> str:
    """'function (path/to/file.py:123)' -> 'function (file-ish:123)', shortened for the report."""
    function, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "/lib/python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{function} ({where})"


def run(
    out_dir: Path,
    *,
    reps: int,
    duration_s: float,
    concurrencies: list[int],
    rate: float,
    rate_duration_s: float,
    profile: bool,
) -> dict[str, Any]:
    wrk = ensure_tool("wrk", "wrk")
    if wrk is None:
        return {"skipped": "wrk is not installed and `apt-get install wrk` failed; no load generator"}
    work = Path(tempfile.mkdtemp(prefix="wkw-bench-http-"))
    result: dict[str, Any] = {"load_generator": "wrk 4.1.0 (Debian), Lua script posting real reviews, keep-alive"}
    try:
        certs = make_certs(work / "certs")
        mix = review_mix()
        manifest = write_bodies(work / "bodies", mix)
        result["mix"] = mix_summary(mix)
        log("section 1: starting ours and floor servers")
        ours = start_ours(certs, out_dir / "logs")
        floor = start_floor(certs, out_dir / "logs")
        servers = {"ours": ours, "floor": floor}
        result["server"] = {
            "workers": ours.workers,
            "worker_class": "webhook.server.worker.AsyncioWorker (asyncio + h11, one event loop per worker)",
            "tls": "TLS >= 1.2 (webhook.server.tls context), ECDSA P-256 dev cert",
        }
        try:
            for server in servers.values():
                run_wrk(server, manifest, connections=8, duration_s=2)  # warm both (imports, caches)
            closed: dict[str, Any] = {}
            for connections in concurrencies:
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
                for rep in range(reps):
                    order = ("ours", "floor") if rep % 2 == 0 else ("floor", "ours")
                    for name in order:
                        runs[name].append(
                            run_wrk(servers[name], manifest, connections=connections, duration_s=duration_s)
                        )
                closed[str(connections)] = summarise(runs, METRICS)
                log(
                    f"  c={connections}: ours p99 {closed[str(connections)]['ours']['p99_ms']} ms, "
                    f"floor p99 {closed[str(connections)]['floor']['p99_ms']} ms, "
                    f"ours {closed[str(connections)]['ours']['rps']} req/s"
                )
            result["closed_loop"] = closed
            result["highest_sustained_rps"] = {
                name: max(closed[str(c)][name]["rps"] for c in concurrencies) for name in servers
            }
            log(f"section 1: fixed rate {rate:.0f} req/s")
            open_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
            for rep in range(reps):
                order = ("ours", "floor") if rep % 2 == 0 else ("floor", "ours")
                for name in order:
                    open_runs[name].append(
                        run_open_loop(servers[name], manifest, rate=rate, duration_s=rate_duration_s)
                    )
            result["fixed_rate"] = {
                "rate": rate,
                "duration_s": rate_duration_s,
                "client": "tests.support.openloop (asyncio, 16 keep-alive TLS connections, latency from due time)",
                **summarise(open_runs, OPEN_METRICS),
            }
            log(f"section 1: fixed rate {rate:.0f} req/s while 1,000 hostile connections are held")
            result["under_attack"] = under_attack(ours, manifest, rate=rate, duration_s=rate_duration_s, reps=reps)
            ours_cpu = worker_cpu(ours)
            result["ours_total_cpu_s"] = round(ours_cpu, 1)
            missed = (
                any((closed[str(c)]["ratio_ours_over_floor"]["p99_ms"] or 0) > 1.5 for c in concurrencies)
                or (result["fixed_rate"]["ours"]["p99_ms"] or 0) > 10
            )
            if profile and missed:
                log("section 1: a webhook target is missed: profiling a worker under load with py-spy")
                result["profile_under_load"] = profile_under_load(ours, manifest, work)
        finally:
            for server in servers.values():
                server.stop()
        log("section 1: in-process review() cost per fixture")
        result["inprocess_review"] = inprocess_costs()
        result["inprocess_profile"] = inprocess_breakdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result
