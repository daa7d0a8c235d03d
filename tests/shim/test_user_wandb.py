"""The component's own W&B calls land in the shim's run: wandb.log, wandb.run, wandb.init() with nothing
the shared run cannot be (returns the shim's run, merges config, finishes nothing), `with wandb.init()`,
wandb.finish(); a wandb.init(project=<another>) gets a run of its own, as without the webhook.

Real kfp.local (SubprocessRunner, no venv) pipelines in Python 3.11 with kfp 2.17.3 and wandb 0.31.0;
each task is its own component process and so its own W&B run, read back from its .wandb file.
Lightning's WandbLogger and HF's WandbCallback need torch (too heavy to install here); the last test
makes the exact calls they make (`wandb.run` reuse, `wandb.init(project=..., config=...)` when absent,
`run.config.update(..., allow_val_change=True)`, `run.log` with their step keys, `define_metric`).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

from tests.shim.wandb_reader import find_run_files, read_run
from webhook.shim import contract

PIPELINE = textwrap.dedent(
    """
    import sys
    from kfp import dsl, local
    from kfp.dsl import Dataset, Input, Output

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[1])


    @dsl.component(base_image="python:3.11")
    def produce(rows: int, data: Output[Dataset]) -> int:
        import wandb

        wandb.log({"loss": 0.5})
        wandb.run.summary["seen_rows"] = rows
        with wandb.init(config={"optimizer": "sgd"}) as shared:
            shared.log({"loss": 0.25})
        second = wandb.init(project="someone-elses", config={"batch_size": 32}, reinit="finish_previous")
        assert second is wandb.run
        second.log({"loss": 0.125})
        second.finish()
        wandb.finish()
        with open(data.path, "w") as handle:
            handle.write("r\\n" * rows)
        print("produced", rows)
        return rows * 2


    @dsl.component(base_image="python:3.11")
    def consume(data: Input[Dataset], factor: int) -> int:
        import wandb

        lines = open(data.path).read().splitlines()
        if wandb.run is not None:  # what Lightning's WandbLogger and HF's WandbCallback check first
            run = wandb.run
        else:
            run = wandb.init(project="lightning_logs")
        run.config.update({"trainer/max_epochs": 3}, allow_val_change=True)
        run.define_metric("trainer/global_step")
        run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        for step in range(3):
            run.log({"train/loss": 1.0 / (step + 1), "trainer/global_step": step})
        return len(lines) * factor


    @dsl.pipeline
    def pipeline(rows: int = 3) -> int:
        made = produce(rows=rows)
        return consume(data=made.outputs["data"], factor=made.outputs["Output"]).output


    task = pipeline(rows=3)
    print("RESULT", task.output)
    """
)


def _run_pipeline(python: Path, tmp_path: Path, shim_dir: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "pipeline.py"
    script.write_text(PIPELINE)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WANDB_", "PYTHON"))}
    env.update(
        {
            contract.WANDB_MODE: "offline",
            contract.WANDB_DIR: str(tmp_path / "wandb"),
            contract.KFP_RUN_ID: "local-run-1",
            "HOME": str(tmp_path / "home"),
        }
    )
    env["PYTHONPATH"] = contract.bootstrap_dir(str(shim_dir))
    (tmp_path / "wandb").mkdir()
    return subprocess.run(
        [str(python), str(script), str(tmp_path / "root")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )


def test_user_wandb_calls_land_in_the_shim_run(kfp2_python, shim_dir, tmp_path):
    completed = _run_pipeline(kfp2_python, tmp_path, shim_dir)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "RESULT 18" in completed.stdout

    all_runs = list(map(read_run, find_run_files(tmp_path / "wandb")))
    own = [run for run in all_runs if run.project == "someone-elses"]
    runs = {run.job_type: run for run in all_runs if run.project != "someone-elses"}
    assert set(runs) == {"produce", "consume"}

    produce = runs["produce"]
    assert produce.exit_code == 0
    assert produce.group == "local-run-1"
    assert [step["loss"] for step in produce.history if "loss" in step] == [0.5, 0.25]
    assert produce.config["optimizer"] == "sgd" and "batch_size" not in produce.config
    assert len(own) == 1, "wandb.init(project=another) is a run of the component's own"
    assert [step["loss"] for step in own[0].history if "loss" in step] == [0.125]
    assert own[0].config["batch_size"] == 32 and own[0].exit_code == 0
    assert produce.config["rows"] == 3
    assert produce.summary["seen_rows"] == 3
    assert produce.summary["produce.Output"] == 6  # recorded after the user's finish() calls
    assert produce.artifact("produce.data")["entries"][0]["size"] == len("r\n" * 3)

    consume = runs["consume"]
    assert consume.exit_code == 0
    assert consume.project != "lightning_logs"
    assert consume.config["trainer/max_epochs"] == 3
    assert consume.config["factor"] == 6
    assert consume.config["data"]["schemaTitle"] == "system.Dataset"
    assert [step["train/loss"] for step in consume.history if "train/loss" in step] == [1.0, 0.5, 1.0 / 3]
    assert consume.summary["consume.Output"] == 18
