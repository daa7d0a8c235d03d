"""The component process's environment: the webhook's WANDB_KFP_DEFAULT_* values fill only what envFrom
left unset, and the run id reaches the shim's run but not the processes the component starts.

Real KFP v1 fixture programs on Python 3.11 with wandb 0.31.0 (offline), with and without the shim.
"""

from __future__ import annotations

import pytest

from tests.shim.wandb_reader import read_only_run
from webhook.shim import contract

pytestmark = pytest.mark.shim


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
