"""`make bench` / `python -m benchmarks.run`: run the benchmark sections and write results.json and results.md.

    python -m benchmarks.run                      # everything (about 13 min on 2 cores)
    python -m benchmarks.run --quick              # short smoke run of the harness (about 3 min)
    python -m benchmarks.run --sections http,shim # a subset; sections: http, apiserver, shim, memory, node
                                                  # (replaced in results.md/.json; the rest stays as it was)

Each section installs what it needs (wrk, hyperfine from Debian; py-spy from PyPI into a cached venv; the
kfp+wandb venv via tests/support/venvs.py) or is skipped with the reason printed and recorded. All traffic
is loopback; every load loop is bounded in request count and time. Nothing here asserts: a missed target
is reported in the Targets table. WKW_BENCH_BUILD_E2E=1 lets section 2 build the apiserver binaries.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_DIR, REPO_ROOT, load_average, log, machine_info
from benchmarks.report import render, splice, targets

SECTIONS = ("http", "apiserver", "shim", "memory", "node")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ", ".join(SECTIONS)
    )
    parser.add_argument("--quick", action="store_true", help="short runs: checks the harness, not the numbers")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR)
    parser.add_argument("--reps", type=int, default=None, help="repetitions per load figure (default 5)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per wrk run (default 5)")
    parser.add_argument("--memory-requests", type=int, default=None, help="requests for the RSS check (default 100000)")
    parser.add_argument("--no-profile", action="store_true", help="do not run py-spy even when a target is missed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wanted = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        print(f"unknown sections: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    quick = args.quick
    reps = args.reps or (2 if quick else 5)
    duration = args.duration or (2.0 if quick else 5.0)
    os.chdir(REPO_ROOT)
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    # Server logs (JSON lines; one per request at DEBUG or with the access log) stay out of the checkout.
    work_dir = Path(tempfile.mkdtemp(prefix="wkw-bench-"))
    log(f"server logs go to {work_dir / 'logs'}")
    started = time.time()
    results: dict[str, Any] = {
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": machine_info(),
        "quick": quick,
        "sections": {},
        "notes": [],
    }
    log(f"machine: {results['machine']['cpu_count']} CPUs, load {results['machine']['load_average_at_start']}")
    runners = {
        "http": lambda: __import__("benchmarks.http_bench", fromlist=["run"]).run(
            work_dir,
            reps=reps,
            duration_s=duration,
            concurrencies=[1, 8, 32, 128],
            rate=500.0,
            rate_duration_s=3.0 if quick else 10.0,
            profile=not args.no_profile,
        ),
        "apiserver": lambda: __import__("benchmarks.apiserver_bench", fromlist=["run"]).run(
            work_dir, pairs=20 if quick else 100, rounds=2 if quick else 3
        ),
        "shim": lambda: __import__("benchmarks.shim_bench", fromlist=["run"]).run(
            work_dir,
            component_rounds=2 if quick else 5,
            hyperfine_runs=20 if quick else 60,
            repeats=2 if quick else 3,
            install_repeats=1 if quick else 3,
        ),
        "memory": lambda: __import__("benchmarks.memory_bench", fromlist=["run"]).run(
            work_dir,
            total_requests=args.memory_requests or (8000 if quick else 100_000),
            chunks=4,
            chunk_time_cap_s=240.0,
        ),
        "node": lambda: __import__("benchmarks.node_bench", fromlist=["run"]).run(work_dir, pairs=4 if quick else 24),
    }
    for name in SECTIONS:
        if name not in wanted:
            continue
        section_started = time.time()
        try:
            results["sections"][name] = runners[name]()
        except Exception as error:  # noqa: BLE001 - one broken section must not lose the others' figures
            traceback.print_exc()
            results["sections"][name] = {"skipped": f"failed: {type(error).__name__}: {str(error)[:600]}"}
        results["sections"][name]["section_seconds"] = round(time.time() - section_started, 1)
        results["sections"][name]["load_average_after"] = [round(v, 2) for v in load_average()]
        if "skipped" in results["sections"][name]:
            log(f"section {name} skipped: {results['sections'][name]['skipped']}")
    finished = time.time()
    results["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(finished))
    results["wall_seconds"] = round(finished - started, 1)
    results["load_average_at_end"] = [round(v, 2) for v in load_average()]
    if quick:
        results["notes"].append("--quick run: short durations, the figures only check the harness")
    results["targets"] = targets(results)
    results["server_logs"] = str(work_dir / "logs")
    if set(wanted) != set(SECTIONS) and (out_dir / "results.json").is_file() and (out_dir / "results.md").is_file():
        # A subset: the sections run now replace theirs in the last full results; the rest stays as it was.
        merged = json.loads((out_dir / "results.json").read_text())
        run_info = {key: results[key] for key in ("argv", "started_at", "finished_at", "machine", "quick")}
        for name in wanted:
            merged["sections"][name] = {**results["sections"][name], "run": run_info}
        merged.setdefault("partial_runs", []).append({**run_info, "sections": wanted})
        merged["targets"] = targets(merged)
        markdown = splice(
            (out_dir / "results.md").read_text(), merged, wanted, with_targets=bool(set(wanted) - {"node"})
        )
        (out_dir / "results.json").write_text(json.dumps(merged, indent=1, default=str) + "\n")
        (out_dir / "results.md").write_text(markdown)
    else:
        (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
        (out_dir / "results.md").write_text(render(results))
    log(f"wrote {out_dir / 'results.md'} and results.json in {results['wall_seconds']:.0f} s")
    for row in results["targets"]:
        print(f"  {'MET ' if row['met'] else 'MISS'} {row['target']}: {row['measured']} (goal {row['goal']})")
    broken = [
        name for name, section in results["sections"].items() if str(section.get("skipped", "")).startswith("failed")
    ]
    if broken:
        log(f"sections that failed (a bug, not a missing tool): {', '.join(broken)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
