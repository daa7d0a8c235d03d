"""The component process's environment: the webhook's WANDB_KFP_DEFAULT_* values fill only what envFrom
left unset, and the run id reaches the shim's run but not the processes the component starts.

Real KFP v1 fixture programs on Python 3.11 with wandb 0.31.0 (offline), with and without the shim.
"""

from __future__ import annotations

import pytest

from tests.shim.wandb_reader import read_only_run
from webhook.shim import contract


def test_envfrom_values_win_and_defaults_fill_the_gaps(component):
    case = component("v1-add")
    recorded = case.run(
        shim=True,
        extra_env={
            contract.WANDB_PROJECT: "from-envfrom",  # what a ConfigMap in envFrom set
            contract.DEFAULT_PREFIX + contract.WANDB_PROJECT: "from-webhook",
            contract.DEFAULT_PREFIX + contract.WANDB_JOB_TYPE: "job-from-webhook",
            contract.DEFAULT_PREFIX + contract.WANDB_RUN_ID: "kfp-00000000000000aa",
        },
    )
    assert recorded.returncode == 0, recorded.stderr
    run = read_only_run(recorded.wandb_dir)
    assert run.project == "from-envfrom"
    assert run.job_type == "job-from-webhook"
    assert run.run_id == "kfp-00000000000000aa"


def test_defaults_never_reach_a_process_that_is_not_a_component(tmp_path, shim_dir):
    import os
    import subprocess
    import sys

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "PYTHON"))},
        "PYTHONPATH": contract.bootstrap_dir(str(shim_dir)),
        contract.DEFAULT_PREFIX + contract.WANDB_PROJECT: "from-webhook",
    }
    printed = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('WANDB_PROJECT'))"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == "None"


@pytest.mark.parametrize("name", ["v1-count-lines", "v2-train"])
def test_a_home_that_cannot_be_written_changes_nothing_the_component_shows(component, name):
    """OpenShift's arbitrary UIDs get HOME=/ (not writable): wandb must neither print its log on the
    component's stderr nor fail to stage artifacts. A file as HOME is unwritable even for root."""
    case = component(name)
    unwritable = {"HOME": "/proc/version"}
    baseline = case.run(shim=False, extra_env=unwritable)
    recorded = case.run(shim=True, extra_env=unwritable)
    assert baseline.returncode == 0, baseline.stderr
    assert recorded.outcome() == baseline.outcome()
    assert len(recorded.shim_lines) == 1 and "wandb sync" in recorded.shim_lines[0], recorded.shim_lines
    run = read_only_run(recorded.wandb_dir)
    assert run.exit_code == 0 and run.artifacts, "the output artifact was staged and logged"
