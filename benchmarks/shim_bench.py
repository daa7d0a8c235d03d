"""Section 3: what the runtime shim costs a component, every interpreter start, and the init container.

* a trivial KFP v2 component through kfp.local SubprocessRunner(use_venv=False) in a venv with kfp 2.17.3
  and wandb 0.31.0 (the shim tests' venv, tests/support/venvs.py): no W&B, the shim, hand-written wandb
  calls (benchmarks/shim_driver.py, alternating, median of rounds);
* the inactive bootstrap: `python -c pass` (and a small script) with and without the bootstrap dir on
  PYTHONPATH, with hyperfine when it can be installed (else a loop of our own), alternating repetitions;
* the init container: `wandb-kfp-webhook shim install DIR` into an empty dir, time and bytes, with the
  cached vendored-wandb payload (what the image ships) and without;
* the init container per pod: the install arguments the webhook gives a pod whose image is `python:3.7`,
  `python:3.11-slim` (without and with packages installed by its command) or an image that does not name
  its Python, run for real with the cached payload: bytes copied, wall time, the sizeLimit the webhook sets.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_DIR, REPO_ROOT, ensure_tool, log, median

KFP2_REQUIREMENTS = ["kfp==2.17.3", "wandb==0.31.0"]  # as tests/shim/conftest.py: one cached venv for both
CLI = REPO_ROOT / ".venv" / "bin" / "wandb-kfp-webhook"


def cli_argv() -> list[str]:
    return [str(CLI)] if CLI.exists() else [sys.executable, "-m", "webhook.cli"]


def install_shim(dest: Path, payload: Path | None, args: list[str] | None = None) -> dict[str, Any]:
    """One `shim install [ARGS]` into a new dir, timed from outside; its size on disk."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env["WANDB_KFP_PAYLOAD_DIR"] = str(payload) if payload else str(dest.parent / "no-payload-here")
    started = time.perf_counter()
    completed = subprocess.run(
        [*cli_argv(), "shim", "install", str(dest), *(args or [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"shim install failed: {completed.stderr[-800:]}")
    files, apparent, inodes, blocks = 0, 0, set(), 0
    for path in dest.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            files += 1
            apparent += stat.st_size
            if (stat.st_dev, stat.st_ino) not in inodes:
                inodes.add((stat.st_dev, stat.st_ino))
                blocks += stat.st_blocks * 512
    return {
        "seconds": elapsed,
        "files": files,
        "bytes": apparent,
        "disk_bytes": blocks,
        "message": completed.stdout.strip().splitlines()[-1] if completed.stdout.strip() else "",
    }


def cached_payload() -> Path | None:
    try:
        from tests.shim.support import payload_key
        from tests.support.venvs import cache_root
    except ImportError:
        return None
    root = cache_root() / f"payload-{payload_key()}"
    return root if (root / "site" / "manifest.json").is_file() else None


def init_container(work: Path, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    payload = cached_payload()
    variants = {"without_payload": None}
    if payload is not None:
        variants["with_payload"] = payload
    else:
        out["with_payload"] = {
            "skipped": "no cached payload (built by the shim tests: tests/shim/support.payload_dir())"
        }
    for name, source in variants.items():
        samples = []
        for index in range(repeats + 1):
            dest = work / f"install-{name}-{index}"
            sample = install_shim(dest, source)
            shutil.rmtree(dest, ignore_errors=True)
            if index:  # the first run warms the page cache
                samples.append(sample)
        out[name] = {
            "seconds_median": round(median([s["seconds"] for s in samples]), 3),
            "files": samples[-1]["files"],
            "bytes": samples[-1]["bytes"],
            "disk_bytes": samples[-1]["disk_bytes"],
            "repeats": repeats,
            "message": samples[-1]["message"],
        }
        if source is not None:
            out[name]["payload"] = str(source)
    return out


#: (label, main container image, whether its command pip-installs packages) for the per-pod copy table.
POD_IMAGES = (
    ("python:3.7 (KFP v1 default)", "python:3.7", False),
    ("python:3.9 (KFP v2 2.10-2.14, the largest minor)", "python:3.9", False),
    ("python:3.11-slim (KFP v2 2.15+)", "python:3.11-slim", False),
    ("python:3.11-slim + packages_to_install", "python:3.11-slim", True),
    ("unknown image", "registry.example/team/trainer:1.4", False),
)


def per_pod_copies(work: Path, repeats: int) -> dict[str, Any]:
    """What the init container copies for pods of each image, with the arguments the webhook gives them."""
    from webhook.admission import pythonimage
    from webhook.shim import contract

    payload = cached_payload()
    if payload is None:
        return {"skipped": "no cached payload (built by the shim tests: tests/shim/support.payload_dir())"}
    previous = os.environ.get(contract.PAYLOAD_DIR_ENV)
    os.environ[contract.PAYLOAD_DIR_ENV] = str(payload)  # the webhook reads sizes from the image's manifest
    rows: dict[str, Any] = {}
    try:
        for label, image, installs in POD_IMAGES:
            minor = pythonimage.python_minor(image)
            args = pythonimage.install_args(minor, installs)
            samples = []
            for index in range(repeats + 1):
                dest = work / f"pod-copy-{len(rows)}-{index}"
                sample = install_shim(dest, payload, args)
                shutil.rmtree(dest, ignore_errors=True)
                if index:  # the first run warms the page cache
                    samples.append(sample)
            rows[label] = {
                "image": image,
                "args": args,
                "seconds_median": round(median([s["seconds"] for s in samples]), 3),
                "files": samples[-1]["files"],
                "bytes": samples[-1]["bytes"],
                "disk_bytes": samples[-1]["disk_bytes"],
                "size_limit": pythonimage.size_limit(minor, installs, "512Mi (shim_size_limit)"),
                "repeats": repeats,
            }
    finally:
        if previous is None:
            os.environ.pop(contract.PAYLOAD_DIR_ENV, None)
        else:
            os.environ[contract.PAYLOAD_DIR_ENV] = previous
    full = rows["unknown image"]["disk_bytes"]
    for row in rows.values():
        row["share_of_every_minor"] = round(row["disk_bytes"] / full, 3)
    for label, row in rows.items():
        log(
            f"  {label:40s} {' '.join(row['args']) or '(every minor)':22s} {row['disk_bytes']:>12,} bytes "
            f"({row['share_of_every_minor']:.0%})  {row['seconds_median']:.3f} s  sizeLimit {row['size_limit']}"
        )
    return {"payload": str(payload), "pods": rows}


def _hyperfine(commands: list[str], runs: int, work: Path, tag: str) -> dict[str, float]:
    export = work / f"hyperfine-{tag}.json"
    subprocess.run(
        ["hyperfine", "-N", "--warmup", "10", "--runs", str(runs), "--export-json", str(export), *commands],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    data = json.loads(export.read_text())
    return {result["command"]: result["median"] * 1000 for result in data["results"]}


def _own_loop(commands: list[str], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {command: [] for command in commands}
    for _ in range(runs):
        for command in commands:
            started = time.perf_counter()
            subprocess.run(command.split(), capture_output=True, check=True, timeout=60)
            times[command].append((time.perf_counter() - started) * 1000)
    return {command: statistics.median(values) for command, values in times.items()}


def bootstrap_cost(python: Path, bootstrap: Path, work: Path, runs: int, repeats: int) -> dict[str, Any]:
    """Interpreter start with and without the bootstrap. In a pod the shim volume is read-only and fresh,
    so no .pyc of sitecustomize.py can exist or be written: the source is compiled at every start. That is
    `with_ms` (PYTHONDONTWRITEBYTECODE=1, no __pycache__). `with_pyc_ms` is the same with a .pyc next to it
    (what precompiling at install time would give)."""
    precompiled = work / "precompiled-bootstrap"
    shutil.copytree(bootstrap, precompiled)
    subprocess.run(
        [str(python), "-m", "compileall", "-q", str(precompiled)],
        check=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )
    script = work / "hello.py"
    script.write_text("import sys\nprint('hello', file=sys.stderr) if len(sys.argv) > 5 else None\n")
    tool = "hyperfine" if ensure_tool("hyperfine", "hyperfine") else None
    out: dict[str, Any] = {
        "tool": "hyperfine -N (no shell), --warmup 10" if tool else "own subprocess loop",
        "python": str(python),
        "runs_per_command": runs,
        "repetitions": repeats,
    }
    for label, tail in (("python -c pass", "-c pass"), ("python hello.py", str(script))):
        variants = {
            "without_ms": f"env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 {python} {tail}",
            "with_ms": f"env PYTHONPATH={bootstrap} PYTHONDONTWRITEBYTECODE=1 {python} {tail}",
            "with_pyc_ms": f"env PYTHONPATH={precompiled} PYTHONDONTWRITEBYTECODE=1 {python} {tail}",
        }
        rows = []
        for index in range(repeats):
            commands = list(variants.values())
            if index % 2:
                commands.reverse()
            medians = _hyperfine(commands, runs, work, f"{index}") if tool else _own_loop(commands, runs)
            rows.append({key: round(medians[command], 3) for key, command in variants.items()})
        summary: dict[str, Any] = {key: round(median([row[key] for row in rows]), 3) for key in variants}
        summary["added_ms"] = round(median([row["with_ms"] - row["without_ms"] for row in rows]), 3)
        summary["added_with_pyc_ms"] = round(median([row["with_pyc_ms"] - row["without_ms"] for row in rows]), 3)
        summary["ratio"] = round(median([row["with_ms"] / row["without_ms"] for row in rows]), 3)
        summary["repetitions"] = rows
        out[label] = summary
    return out


def component_costs(python: Path, bootstrap: Path, work: Path, rounds: int) -> dict[str, Any]:
    driver_work = work / "driver"
    driver_work.mkdir()
    completed = subprocess.run(
        [
            str(python),
            str(BENCH_DIR / "shim_driver.py"),
            "--bootstrap",
            str(bootstrap),
            "--work",
            str(driver_work),
            "--rounds",
            str(rounds),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
        cwd=driver_work,
    )
    line = next((line for line in completed.stdout.splitlines() if line.startswith("SHIMJSON ")), None)
    if completed.returncode != 0 or line is None:
        return {"skipped": f"kfp.local driver failed ({completed.returncode}): {completed.stderr[-1200:]}"}
    result: dict[str, Any] = json.loads(line.removeprefix("SHIMJSON "))
    medians = result["median_s"]
    result["ratio_shim_over_hand"] = round(medians["shim"] / medians["hand"], 3)
    result["ratio_shim_over_none"] = round(medians["shim"] / medians["none"], 3)
    result["ratio_hand_over_none"] = round(medians["hand"] / medians["none"], 3)
    # per-round ratios: the two runs of one round are adjacent in time
    result["ratio_shim_over_hand_per_round_median"] = round(
        statistics.median(s / h for s, h in zip(result["times_s"]["shim"], result["times_s"]["hand"], strict=False)), 3
    )
    return result


def run(
    out_dir: Path, *, component_rounds: int, hyperfine_runs: int, repeats: int, install_repeats: int
) -> dict[str, Any]:
    from tests.support.venvs import ensure_venv

    work = Path(tempfile.mkdtemp(prefix="wkw-bench-shim-"))
    result: dict[str, Any] = {}
    try:
        log("section 3: init container (shim install)")
        result["init_container"] = init_container(work, install_repeats)
        log("section 3: init container per pod image (bytes copied, wall time)")
        result["per_pod_copy"] = per_pod_copies(work, install_repeats)
        shim = work / "wandb-shim"
        install_shim(shim, None)
        bootstrap = shim / "bootstrap"
        try:
            python = ensure_venv("s2-kfp2-wandb", "3.11", KFP2_REQUIREMENTS)
        except Exception as error:  # noqa: BLE001 - no Python 3.11 or no registry: say so and go on
            result["component"] = {"skipped": f"no kfp + wandb venv: {error}"}
            python = None
        log("section 3: inactive bootstrap cost per interpreter start")
        result["bootstrap_inactive"] = bootstrap_cost(
            python or Path(sys.executable), bootstrap, work, hyperfine_runs, repeats
        )
        if python is not None:
            log(f"section 3: trivial KFP v2 component via kfp.local, {component_rounds} rounds x 3 variants")
            result["component"] = component_costs(python, bootstrap, work, component_rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result
