"""Components that start processes, fork, share their run with threads or ask for runs of their own
behave as they do without the shim, and the shim's run is still recorded.

Real kfp.local pipelines (SubprocessRunner, no venv) in Python 3.11 with kfp 2.17.3 and wandb 0.31.0,
each run twice: without the shim (the baseline) and with it, with the webhook's WANDB_RUN_ID set. Every
task is its own component process, so its own W&B run, read back from its .wandb file.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

from tests.shim.wandb_reader import find_run_files, read_run
from webhook.shim import contract

HEADER = textwrap.dedent(
    """
    import sys
    from kfp import dsl, local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[1])
    """
)

CHILD_PROCESS = HEADER + textwrap.dedent(
    """
    @dsl.component(base_image="python:3.11")
    def train(epochs: int) -> int:
        import subprocess, sys
        child = (
            "import wandb\\n"
            "run = wandb.init(config={'worker': 1})\\n"
            "run.log({'child_loss': 0.5})\\n"
            "run.finish()\\n"
            "print('child done')\\n"
        )
        completed = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
        print("child exit", completed.returncode, completed.stdout.strip())
        if completed.returncode != 0:
            raise RuntimeError("the child failed: " + completed.stderr[-2000:])
        return epochs * 2

    task = train(epochs=3)
    print("RESULT", task.output)
    """
)

FORK = HEADER + textwrap.dedent(
    """
    @dsl.component(base_image="python:3.11")
    def forker(n: int, how: str) -> int:
        import os, sys
        pid = os.fork()
        if pid == 0:
            if how == "exit":
                sys.exit(0)
            return n  # the child goes on through the executor, as the parent will after it
        os.waitpid(pid, 0)
        return n + 1

    first = forker(n=1, how="return")
    second = forker(n=10, how="exit")
    print("RESULT", first.output, second.output)
    """
)

THREADS_AND_OWN_RUNS = HEADER + textwrap.dedent(
    """
    @dsl.component(base_image="python:3.11")
    def threaded(steps: int) -> int:
        import threading, time, wandb
        run = wandb.init(config={"lr": 0.1})          # shares the shim's run
        other = wandb.init(project="someone-elses", config={"mine": True})  # a run of its own
        other.log({"other_loss": 1.0})
        other.finish()

        def late_logger():
            time.sleep(0.5)                           # after the component function returned
            for step in range(3):
                run.log({"late_loss": 1.0 / (step + 1)})

        threading.Thread(target=late_logger).start()
        return steps

    task = threaded(steps=4)
    print("RESULT", task.output)
    """
)


def run_pipeline(python: Path, tmp_path: Path, shim_dir: Path, source: str, shim: bool) -> tuple:
    """(completed process, W&B runs) for one pipeline run, with or without the shim."""
    base = tmp_path / ("shim" if shim else "baseline")
    base.mkdir()
    script = base / "pipeline.py"
    script.write_text(source)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WANDB_", "PYTHON"))}
    env.update(
        {
            contract.WANDB_MODE: "offline",
            contract.WANDB_DIR: str(base / "wandb"),
            contract.KFP_RUN_ID: "local-run-1",
            contract.WANDB_RUN_GROUP: "local-run-1",
            "HOME": str(base / "home"),
        }
    )
    if shim:
        env["PYTHONPATH"] = contract.bootstrap_dir(str(shim_dir))
        env[contract.WANDB_RUN_ID] = "kfp-0123456789abcdef"  # what the webhook sets on every pod
    (base / "wandb").mkdir()
    completed = subprocess.run(
        [str(python), str(script), str(base / "root")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=base,
    )
    runs = [read_run(path) for path in find_run_files(base / "wandb")]
    return completed, runs


def results(completed: subprocess.CompletedProcess[str]) -> list[str]:
    lines = (line.strip() for line in completed.stdout.splitlines())
    return [line for line in lines if line.startswith(("RESULT", "child exit"))]


def test_a_child_process_starts_its_own_run_as_without_the_webhook(kfp2_python, shim_dir, tmp_path):
    baseline, _ = run_pipeline(kfp2_python, tmp_path, shim_dir, CHILD_PROCESS, shim=False)
    recorded, runs = run_pipeline(kfp2_python, tmp_path, shim_dir, CHILD_PROCESS, shim=True)
    assert baseline.returncode == 0, baseline.stderr
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert results(recorded) == results(baseline) == ["child exit 0 child done", "RESULT 6"]
    by_id = {run.run_id: run for run in runs}
    shim_run = by_id["kfp-0123456789abcdef"]
    assert shim_run.summary["train.Output"] == 6 and shim_run.exit_code == 0
    children = [run for run in runs if run.run_id != "kfp-0123456789abcdef"]
    assert len(children) == 1
    assert children[0].group == "local-run-1"  # the child's run joins the pipeline run's group
    assert [step["child_loss"] for step in children[0].history if "child_loss" in step] == [0.5]


def test_a_forked_child_leaving_the_component_never_finishes_or_blocks_the_run(kfp2_python, shim_dir, tmp_path):
    baseline, _ = run_pipeline(kfp2_python, tmp_path, shim_dir, FORK, shim=False)
    recorded, runs = run_pipeline(kfp2_python, tmp_path, shim_dir, FORK, shim=True)
    assert baseline.returncode == 0, baseline.stderr
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert results(recorded) == results(baseline) == ["RESULT 2 11"]
    finished = {run.job_type: run for run in runs}
    assert set(finished) == {"forker"} or len(runs) == 2
    assert sorted(run.summary["forker.Output"] for run in runs) == [2, 11]
    assert all(run.exit_code == 0 for run in runs)


def test_threads_log_after_return_and_another_project_gets_its_own_run(kfp2_python, shim_dir, tmp_path):
    baseline, _ = run_pipeline(kfp2_python, tmp_path, shim_dir, THREADS_AND_OWN_RUNS, shim=False)
    recorded, runs = run_pipeline(kfp2_python, tmp_path, shim_dir, THREADS_AND_OWN_RUNS, shim=True)
    assert baseline.returncode == 0, baseline.stderr
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert "UsageError" not in recorded.stderr
    assert results(recorded) == results(baseline) == ["RESULT 4"]
    by_project = {run.project: run for run in runs}
    assert set(by_project) >= {"someone-elses"}
    mine = by_project["someone-elses"]
    assert mine.config["mine"] is True and mine.run_id != "kfp-0123456789abcdef"
    shim_run = next(run for run in runs if run.run_id == "kfp-0123456789abcdef")
    assert shim_run.config["lr"] == 0.1 and "mine" not in shim_run.config
    assert [step["late_loss"] for step in shim_run.history if "late_loss" in step] == [1.0, 0.5, 1.0 / 3]
    assert shim_run.summary["threaded.Output"] == 4 and shim_run.exit_code == 0
