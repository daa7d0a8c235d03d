"""Which wandb the component process gets: the image's own if it has one, else the one vendored for this
CPython minor under DIR/site/py3.X (installed by `wandb-kfp-webhook shim install`).

Called only when a wrapped component function runs, never at interpreter start. The vendored directory
is appended to sys.path (the image's packages keep winning for the user's own imports) and taken off
again when the import fails, so a failure leaves the process as it found it: one stderr line, None.
Runs in component images: stdlib only, Python 3.7-parseable.
"""

import importlib.util
import json
import os
import sys
from types import ModuleType
from typing import Optional, Tuple

from . import contract
from .messages import describe, say

_MANIFEST = "manifest.json"


def shim_root() -> str:
    """DIR: this file is DIR/lib/wandb_kfp_shim/site.py."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def vendored_dir(root: Optional[str] = None) -> str:
    """DIR/site/py3.X for the running interpreter."""
    return os.path.join(root or shim_root(), contract.SITE_SUBDIR, "py%d.%d" % sys.version_info[:2])


def _glibc() -> Optional[Tuple[int, ...]]:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    name, _, version = text.partition(" ")
    if name != "glibc":
        return None
    try:
        return tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return None


def _glibc_problem(root: str) -> Optional[str]:
    """Why this C library cannot load the vendored wheels (their manylinux floor), or None."""
    try:
        with open(os.path.join(root, contract.SITE_SUBDIR, _MANIFEST)) as handle:
            needed_text = json.load(handle).get("glibc_min", "2.0")
        needed = tuple(int(part) for part in needed_text.split("."))
    except (OSError, ValueError, AttributeError):
        return None  # no readable manifest: let the import itself decide
    have = _glibc()
    if have is None:
        return "the vendored wandb needs glibc %s and this C library is not glibc" % needed_text
    if have < needed:
        return "the vendored wandb needs glibc >= %s, this image has %d.%d" % (needed_text, have[0], have[1])
    return None


def _under(module: Optional[ModuleType], directory: str) -> bool:
    """Whether a module was loaded from inside directory."""
    prefix = directory.rstrip(os.sep) + os.sep
    locations = [getattr(module, "__file__", None) or ""]
    locations += list(getattr(module, "__path__", None) or [])
    return any(str(location).startswith(prefix) for location in locations)


def _image_has_wandb() -> bool:
    try:
        return importlib.util.find_spec("wandb") is not None
    except (ImportError, ValueError):
        return False


def import_wandb(root: Optional[str] = None) -> Optional[ModuleType]:
    """The wandb module to record with, or None (after one stderr line saying why)."""
    module = sys.modules.get("wandb")
    if module is not None:
        return module
    if _image_has_wandb():
        try:
            import wandb
        except Exception as error:
            say("the image's own wandb failed to import (%s); W&B tracking is off" % describe(error))
            return None
        return wandb
    return import_vendored(root)


def import_vendored(root: Optional[str] = None) -> Optional[ModuleType]:
    """Import the vendored wandb for this minor; on failure undo sys.path and the half-imported modules."""
    root = root or shim_root()
    directory = vendored_dir(root)
    minor = "%d.%d" % sys.version_info[:2]
    if not os.path.isdir(directory):
        say("no wandb in this image and none vendored for Python %s; W&B tracking is off" % minor)
        return None
    problem = _glibc_problem(root)
    if problem is not None:
        say(problem + "; W&B tracking is off")
        return None
    modules_before = set(sys.modules)
    sys.path.append(directory)
    try:
        import wandb
    except Exception as error:
        while directory in sys.path:
            sys.path.remove(directory)
        for name in set(sys.modules) - modules_before:
            if name == "wandb" or name.startswith("wandb.") or _under(sys.modules[name], directory):
                del sys.modules[name]
        importlib.invalidate_caches()
        say("the vendored wandb for Python %s failed to import (%s); W&B tracking is off" % (minor, describe(error)))
        return None
    return wandb
