"""The component process's environment: the webhook's defaults applied, the run identity kept from children.

Runs at activation, in the component's own process only, before any user code.
* A container that sets variables through `envFrom` gets the webhook's WANDB_* values as
  WANDB_KFP_DEFAULT_* (the webhook cannot see what envFrom holds, and `env` would win over it): each is
  applied here only where the environment lacks the standard name.
* WANDB_RUN_ID names the shim's run alone. Left in os.environ, a child process (`python train.py`,
  torchrun, a DDP spawn) calling wandb.init would ask for the same id while the shim's run is open and
  fail ("run ID is in use"); without the webhook it would start a run of its own. So it is taken out here
  and handed to wandb.init explicitly. The group, job type and tags stay: a child's run joins the group.
Also: writable directories for wandb when HOME is not writable (see writable_wandb_dirs).
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


#: wandb's per-user directories: (its variable, the default under HOME).
_WANDB_DIRS = (
    ("WANDB_CACHE_DIR", (".cache", "wandb")),
    ("WANDB_CONFIG_DIR", (".config", "wandb")),
    ("WANDB_DATA_DIR", (".local", "share", "wandb")),
)


def _usable(path):
    """Whether `path` is (or can be made) a writable directory; wandb would create it just the same."""
    try:
        os.makedirs(path, exist_ok=True)
    except (OSError, ValueError):
        return False
    return os.access(path, os.W_OK | os.X_OK)


class writable_wandb_dirs(object):
    """Give wandb directories it can write when the component's HOME is not writable.

    A component running as a UID with no passwd entry (OpenShift's arbitrary UIDs) has HOME=/ or a
    read-only HOME. wandb then cannot write its cache, config and artifact staging under HOME, and
    wandb-core, unable to create its log under the user cache directory, writes its whole log to the
    component's stderr. For the missing ones, wandb's own variables point at directories under the run
    directory (they stay set: only wandb reads them); XDG_CACHE_HOME, which wandb-core's log location
    follows but user code may read too, is set only while wandb starts its service, then restored.
    """

    def __init__(self, base):
        self.base = os.path.join(base, ".wandb-kfp-home")
        self.saved_xdg = None
        self.changed_xdg = False

    def __enter__(self):
        try:
            home = os.path.expanduser("~")
            for variable, parts in _WANDB_DIRS:
                if not os.environ.get(variable) and not _usable(os.path.join(home, *parts)):
                    private = os.path.join(self.base, variable.lower())
                    if _usable(private):
                        os.environ[variable] = private
            cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
            if not _usable(os.path.join(cache_home, "wandb", "logs")):
                private = os.path.join(self.base, "xdg-cache")
                if _usable(private):
                    self.saved_xdg = os.environ.get("XDG_CACHE_HOME")
                    os.environ["XDG_CACHE_HOME"] = private
                    self.changed_xdg = True
        except Exception:  # noqa: S110 - a shim helper never fails the component; wandb decides then
            pass
        return self

    def __exit__(self, *exc_info):
        if self.changed_xdg:
            if self.saved_xdg is None:
                os.environ.pop("XDG_CACHE_HOME", None)
            else:
                os.environ["XDG_CACHE_HOME"] = self.saved_xdg
        return False
