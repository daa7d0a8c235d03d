"""Runs inside a venv with kfp + wandb (not the project venv): times one trivial KFP v2 component run by
kfp.local's SubprocessRunner(use_venv=False), in three variants, alternating, and prints one JSON line.

    python shim_driver.py --bootstrap DIR --work DIR --rounds N

  none   the component alone, no W&B anywhere
  shim   the same component with the shim's bootstrap first on PYTHONPATH and the identity env the
         webhook injects (the shim wraps the component and records it, offline)
  hand   a component that calls wandb.init / wandb.log / run.finish itself (offline), no shim
Only the stdlib, kfp and wandb are imported here; the timing is around the component call in this
driver (it includes the subprocess kfp.local starts: interpreter, kfp import, executor, W&B).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kfp import dsl, local


@dsl.component(install_kfp_package=False)
def add(a: float, b: float) -> float:
    return a + b


@dsl.component(install_kfp_package=False)
def add_by_hand(a: float, b: float) -> float:
    import wandb

    run = wandb.init(project="kfp-bench", job_type="add", config={"a": a, "b": b})
    result = a + b
    run.log({"add.Output": result})
    run.summary["add.Output"] = result
    run.finish()
    return result


IDENTITY_ENV = {
    "WANDB_KFP_POD_KIND": "kfp-v2-executor",
    "WANDB_KFP_RUN_ID": "c9749317-3b83-5eb2-961a-9909123eaf08",
    "WANDB_KFP_WORKFLOW": "bench-add-abcde",
    "WANDB_KFP_POD_NAME": "bench-add-abcde-system-container-impl-123",
    "WANDB_KFP_NAMESPACE": "kubeflow-user",
    "WANDB_KFP_PIPELINE_NAME": "bench-add",
    "WANDB_PROJECT": "kfp-bench",
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(args.work)
    base_env = {key: value for key, value in os.environ.items() if not key.startswith(("WANDB_", "PYTHONPATH", "_KFP"))}
    base_env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + base_env.get("PATH", "")
    base_env["HOME"] = str(work / "home")
    base_env["WANDB_MODE"] = "offline"
    base_env["WANDB_SILENT"] = "true"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(work / "root"), raise_on_error=True)
    variants = {
        "none": (add, {}),
        "shim": (add, dict(IDENTITY_ENV, PYTHONPATH=args.bootstrap)),
        "hand": (add_by_hand, {}),
    }
    times = {name: [] for name in variants}
    runs_written = {name: 0 for name in variants}
    order = list(variants)
    for round_index in range(args.rounds + 1):  # round 0 warms the page cache and is not counted
        for name in order if round_index % 2 == 0 else list(reversed(order)):
            component, extra = variants[name]
            wandb_dir = Path(tempfile.mkdtemp(prefix=name + "-", dir=str(work)))
            os.environ.clear()
            os.environ.update(base_env)
            os.environ.update(extra)
            os.environ["WANDB_DIR"] = str(wandb_dir)
            started = time.perf_counter()
            task = component(a=1.5, b=2.25)
            elapsed = time.perf_counter() - started
            if task.output != 3.75:
                raise SystemExit(f"component {name} returned {task.output!r}")
            written = len(list(wandb_dir.rglob("*.wandb")))
            if round_index:
                times[name].append(elapsed)
                runs_written[name] += written
    result = {
        "rounds": args.rounds,
        "median_s": {name: round(statistics.median(values), 3) for name, values in times.items()},
        "times_s": {name: [round(value, 3) for value in values] for name, values in times.items()},
        "wandb_runs_written": runs_written,
    }
    sys.stdout.write("SHIMJSON " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
