"""Entry points sitecustomize calls in a component's own process: hook the component, record it in W&B.

Both return at once (the expensive part, importing wandb, happens only when the component function is
called) and never raise: a shim failure is one `wandb-kfp-shim:` line on stderr and an unrecorded run.
"""

import os

from . import contract, environment, faults
from .messages import describe, say


def _mark_active():
    """Tell child processes (pip, user subprocesses) that this process is the recorded one, and give
    this process the webhook's defaults without the run identity children must not inherit."""
    os.environ[contract.ACTIVE_MARKER] = str(os.getpid())
    environment.prepare()


def activate_v1(program_path=None):
    """KFP v1 generated program (`python3 -u <program>`): wrap `<func>` of `_outputs = <func>(**_parsed_args)`."""
    try:
        _mark_active()
        faults.check("activate")
        from . import kfp_v1

        return kfp_v1.install(program_path)
    except Exception as exc:
        say("could not activate for this KFP v1 component (" + describe(exc) + "); not recording")
        return False


def activate_v2():
    """KFP v2 executor (`-m kfp.dsl.executor_main`): patch Executor.execute when kfp imports it."""
    try:
        _mark_active()
        faults.check("activate")
        from . import kfp_v2

        kfp_v2.install_import_hook()
        return True
    except Exception as exc:
        say("could not activate for this KFP v2 component (" + describe(exc) + "); not recording")
        return False
