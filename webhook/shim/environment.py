"""The component process's environment: the webhook's defaults applied, the run identity kept from children.

Runs at activation, in the component's own process only, before any user code.
* A container that sets variables through `envFrom` gets the webhook's WANDB_* values as
  WANDB_KFP_DEFAULT_* (the webhook cannot see what envFrom holds, and `env` would win over it): each is
  applied here only where the environment lacks the standard name.
* WANDB_RUN_ID names the shim's run alone. Left in os.environ, a child process (`python train.py`,
  torchrun, a DDP spawn) calling wandb.init would ask for the same id while the shim's run is open and
  fail ("run ID is in use"); without the webhook it would start a run of its own. So it is taken out here
  and handed to wandb.init explicitly. The group, job type and tags stay: a child's run joins the group.
Stdlib only, Python 3.7-parseable.
"""

import os

from . import contract

_taken = {"run_id": None}


def apply_defaults(environ=None):
    """Set each standard WANDB_* variable from its WANDB_KFP_DEFAULT_* twin where it is missing or empty."""
    environ = os.environ if environ is None else environ
    for name in [key for key in environ if key.startswith(contract.DEFAULT_PREFIX)]:
        target = name[len(contract.DEFAULT_PREFIX) :]
        value = environ.pop(name)
        if target in contract.STANDARD_WANDB_VARIABLES and not environ.get(target):
            environ[target] = value


def take_run_id(environ=None):
    """Move WANDB_RUN_ID from the environment (children would inherit it) into this module."""
    environ = os.environ if environ is None else environ
    value = environ.pop(contract.WANDB_RUN_ID, None)
    if value:
        _taken["run_id"] = value


def run_id():
    """The run id the webhook gave this pod, once taken out of the environment; None otherwise."""
    return _taken["run_id"]


def prepare():
    """Everything above, in order: defaults first (WANDB_RUN_ID may itself be one)."""
    apply_defaults()
    take_run_id()
