"""The component's own wandb calls while the shim's run is open: shared, deferred, or a run of their own.

While the shim's run is active, the user's own `wandb.init()` returns that run (merging its config) when
it asks for nothing the shared run cannot be (another project or entity, a run id, resume), and
`wandb.finish()` / `run.finish()` from user code are deferred to the shim, so integrations that use
`wandb.run` or call `wandb.init` (Lightning's WandbLogger, HF `report_to="wandb"`) log into it. A
`wandb.init` that asks for another project gets a run of its own, as it would without the webhook.
Runs in component images: stdlib + wandb only, Python 3.7-parseable.
"""

import importlib
import re
from typing import Any

from .messages import describe, say

#: Run methods user code may call to end the run; deferred to the shim while the component runs.
DEFERRED_RUN_METHODS = ("finish", "_finish")
#: wandb.init arguments that ask for a run the shim's run cannot be: such a call gets a run of its own.
_OWN_RUN_ARGUMENTS = ("id", "resume", "resume_from", "fork_from")
#: wandb.init arguments compared with the shim's run: a different value means a run of its own.
_IDENTITY_ARGUMENTS = ("project", "entity")


class SharedRun(object):
    """Mixed into the Recorder: how user code's wandb calls meet the shim's run (`self.run`, `self.wandb`)."""

    wandb: Any = None
    run: Any = None
    shared_with_user = False
    _saved_module_init: Any = None
    _saved_module_finish: Any = None

    def active(self) -> bool:
        raise NotImplementedError

    def owns_process(self) -> bool:
        raise NotImplementedError

    def _adopt_user_calls(self):
        """Route the user's wandb.init / wandb.finish / run.finish to the shim's run while it is active."""
        wandb_module = self.wandb
        recorder = self
        original_init = wandb_module.init
        original_finish = getattr(wandb_module, "finish", None)

        def init(*args, **kwargs):
            if not (recorder.active() and recorder.owns_process()):
                return original_init(*args, **kwargs)
            current = getattr(wandb_module, "run", None)
            reason = recorder.own_run_reason(args, kwargs)
            if reason is None and (current is None or current is recorder.run):
                recorder.merge_user_init(kwargs)
                recorder.shared_with_user = True
                return recorder.run
            if not recorder.can_create_new_run():
                say("this wandb cannot keep a run of the component's own beside the shim's; it shares the shim's")
                recorder.merge_user_init(kwargs)
                recorder.shared_with_user = True
                return recorder.run
            if reason is None:
                return original_init(*args, **kwargs)  # the user's own run is wandb.run: wandb returns it
            # A run of the user's own beside the shim's (never finishing it), global as it would be
            # without the webhook.
            kwargs["reinit"] = "create_new"
            run = original_init(*args, **kwargs)
            recorder.make_global(run)
            return run

        def finish(*args, **kwargs):
            if recorder.active() and recorder.owns_process() and _is_shim_run(recorder, kwargs):
                return None
            if original_finish is not None:
                return original_finish(*args, **kwargs)
            return None

        def run_finish(*args, **kwargs):
            """run.finish() and `with wandb.init():` (which calls run._finish) from user code: deferred
            (and never done by a forked child: the run is its parent's)."""
            if recorder.active() or not recorder.owns_process():
                return None
            return type(recorder.run).finish(recorder.run, *args, **kwargs)

        init.__doc__ = original_init.__doc__
        self._saved_module_init = original_init
        self._saved_module_finish = original_finish
        wandb_module.init = init
        if original_finish is not None:
            wandb_module.finish = finish
        for name in DEFERRED_RUN_METHODS:
            if hasattr(self.run, name):
                setattr(self.run, name, run_finish)

    def own_run_reason(self, args, kwargs):
        """Why a user's wandb.init(...) needs a run of its own (a short description), or None to share."""
        if args:
            return "positional arguments"
        for name in _OWN_RUN_ARGUMENTS:
            if kwargs.get(name) not in (None, False):
                return name + "=..."
        if kwargs.get("reinit") in (True, "create_new"):
            return "reinit=" + str(kwargs["reinit"])
        for name in _IDENTITY_ARGUMENTS:
            wanted = kwargs.get(name)
            if wanted and wanted != getattr(self.run, name, None):
                return name + "=..."
        return None

    def can_create_new_run(self):
        """wandb >= 0.19.10 keeps several runs in one process (reinit="create_new")."""
        version = getattr(self.wandb, "__version__", "0")
        try:
            parts = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
        except ValueError:
            return False
        return parts >= (0, 19, 10)

    def make_global(self, run):
        """Point wandb.run and wandb.log at `run`, as wandb.init does for every run but create_new ones."""
        try:
            init_module = importlib.import_module(self.wandb.__name__ + ".sdk.wandb_init")
            init_module._set_global_run(run)
        except Exception as exc:
            say("could not make the component's own run wandb.run (" + describe(exc) + ")")

    def merge_user_init(self, kwargs):
        """Apply what a user's wandb.init(...) asks that a shared run can take: config and tags."""
        try:
            config = kwargs.get("config")
            if config is not None and not isinstance(config, dict):
                config = vars(config) if hasattr(config, "__dict__") else None
            if config:
                self.run.config.update(config, allow_val_change=True)
            tags = kwargs.get("tags")
            if tags:
                self.run.tags = tuple(self.run.tags or ()) + tuple(tag for tag in tags if tag)
        except Exception as exc:
            say("could not apply a wandb.init() call's config to the shared run (" + describe(exc) + ")")

    def _release_run_methods(self, run):
        """Drop the instance-level finish overrides so the run's own methods apply again."""
        for name in DEFERRED_RUN_METHODS:
            vars(run).pop(name, None)

    def _release_user_calls(self):
        """Give wandb.init / wandb.finish back to wandb once the shim's run is closed."""
        if self._saved_module_init is not None:
            self.wandb.init = self._saved_module_init
        if self._saved_module_finish is not None:
            self.wandb.finish = self._saved_module_finish


def _is_shim_run(recorder, kwargs):
    """wandb.finish() ends wandb.run: the shim's run unless the user started one of their own since."""
    current = getattr(recorder.wandb, "run", None)
    return current is None or current is recorder.run
