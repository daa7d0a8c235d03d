"""Fault injection for tests: make the shim itself fail at a named stage, to prove the component never notices.

Read only by the shim. Unset in production, where `check` costs one dictionary lookup.
"""

import os

#: Environment variable naming the stage at which the shim raises ShimFault (tests only).
FAULT_ENV = "WANDB_KFP_SHIM_FAULT"

#: Every stage a test can name; each is a point where the shim's own code runs.
STAGES = (
    "activate",  # installing the hook (sitecustomize time)
    "hook",  # the hook firing: v1 parse_args replacement, v2 executor import
    "import_wandb",  # importing wandb when the component starts
    "init",  # starting the W&B run
    "run_link",  # printing the online run's URL
    "component_file",  # saving the component spec in the run
    "inputs",  # recording inputs (config, input artifacts)
    "lineage",  # recording the inputs' lineage entries (config["kubeflow"]["inputs"])
    "outputs",  # recording outputs (summary, output artifacts) after success
    "failure",  # recording the component's exception
    "finish",  # finishing the run
)


class ShimFault(RuntimeError):
    """Raised on purpose inside the shim; never reaches the component."""


def check(stage):
    """Raise ShimFault when the test asked for a fault at `stage`."""
    if os.environ.get(FAULT_ENV) == stage:
        raise ShimFault("injected fault at stage " + stage)
