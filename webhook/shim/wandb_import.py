"""Which wandb the component process gets: the image's own if it has one, else the one vendored for this
CPython minor under DIR/site/py3.X (installed by `wandb-kfp-webhook shim install`), else, when that one
cannot work next to the image's protobuf, the compat one under DIR/site/py3.X-compat.

Called only when a wrapped component function runs, never at interpreter start. The vendored directory
is appended to sys.path (the image's packages keep winning for the user's own imports) and taken off
again when the import fails, so a failure leaves the process as it found it: one stderr line, None.
The compat site brings no protobuf: it uses the image's. When the image's protobuf (already imported, or
first on sys.path) is older than the vendored wandb for this minor accepts, the compat site is imported
straight away; when the vendored one fails to import for any other reason, the compat one is tried next.
Runs in component images: stdlib only, Python 3.7-parseable.
"""

import importlib.util
import json
import os
import re
import sys
from types import ModuleType
from typing import Any, Dict, Optional, Tuple

from . import contract
from .messages import debug, describe, say

_MANIFEST = "manifest.json"
_VERSION_LINE = re.compile(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", re.MULTILINE)


def shim_root() -> str:
    """DIR: this file is DIR/lib/wandb_kfp_shim/wandb_import.py."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def vendored_dir(root: Optional[str] = None) -> str:
    """DIR/site/py3.X for the running interpreter."""
    return os.path.join(root or shim_root(), contract.SITE_SUBDIR, "py%d.%d" % sys.version_info[:2])


def compat_dir(root: Optional[str] = None) -> str:
    """DIR/site/py3.X-compat for the running interpreter."""
    return vendored_dir(root) + contract.COMPAT_SITE_SUFFIX


def _manifest(root: str) -> Dict[str, Any]:
    try:
        with open(os.path.join(root, contract.SITE_SUBDIR, _MANIFEST)) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _version_tuple(text: Any) -> Optional[Tuple[int, int, int]]:
    numbers = re.findall(r"\d+", str(text or ""))[:3]
    if not numbers:
        return None
    parts = [int(number) for number in numbers] + [0, 0]
    return (parts[0], parts[1], parts[2])


def image_protobuf_version(skip_prefix: str = "") -> Optional[Tuple[int, int, int]]:
    """The protobuf the component will use: the imported one, else the first on sys.path (not imported).

    Reads `google/protobuf/__init__.py` as text: nothing is imported. Entries under skip_prefix (the
    vendored sites) are not the image's.
    """
    module = sys.modules.get("google.protobuf")
    if module is not None:
        return _version_tuple(getattr(module, "__version__", None))
    for entry in sys.path:
        if skip_prefix and str(entry).startswith(skip_prefix):
            continue
        init = os.path.join(entry or os.curdir, "google", "protobuf", "__init__.py")
        try:
            with open(init, encoding="utf-8") as handle:
                match = _VERSION_LINE.search(handle.read(65536))
        except (OSError, ValueError):
            continue
        return _version_tuple(match.group(1)) if match else None
    return None


def protobuf_too_old(have: Optional[Tuple[int, int, int]], floor: Any) -> bool:
    """Whether protobuf `have` is below `floor` ([version, inclusive] from the payload manifest)."""
    if have is None or not isinstance(floor, (list, tuple)) or len(floor) != 2:
        return False
    needed = _version_tuple(floor[0])
    if needed is None:
        return False
    return have < needed or (have == needed and not floor[1])


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
    """Whether a module was loaded from inside directory (False when that cannot be told)."""
    prefix = directory.rstrip(os.sep) + os.sep
    try:
        locations = [getattr(module, "__file__", None) or ""]
        locations += list(getattr(module, "__path__", None) or [])
    except Exception:  # a namespace package whose parent is gone recomputes its path and may raise
        return False
    return any(str(location).startswith(prefix) for location in locations)


def _image_has_wandb() -> bool:
    """Whether the image has a wandb package. A bare `wandb/` directory on the path (a run directory next
    to the program, e.g. /tmp/wandb for a KFP v1 program run from /tmp) is a namespace package, not wandb."""
    try:
        spec = importlib.util.find_spec("wandb")
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin not in (None, "namespace")


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
    """Import the vendored wandb for this minor, else its compat one; undo each failed attempt."""
    root = root or shim_root()
    primary, compat = vendored_dir(root), compat_dir(root)
    minor = "%d.%d" % sys.version_info[:2]
    has_primary, has_compat = os.path.isdir(primary), os.path.isdir(compat)
    if not has_primary and not has_compat:
        say("no wandb in this image and none vendored for Python %s; W&B tracking is off" % minor)
        return None
    problem = _glibc_problem(root)
    if problem is not None:
        say(problem + "; W&B tracking is off")
        return None
    candidates = [primary] if has_primary else []
    entry = _manifest(root).get("minors", {}).get(minor) or {}
    have = image_protobuf_version(os.path.join(root, contract.SITE_SUBDIR) + os.sep)
    if has_primary and protobuf_too_old(have, entry.get("protobuf_min")):
        candidates = []
        older = "the image's protobuf %s is older than the vendored wandb for Python %s accepts" % (
            ".".join(str(part) for part in have or ()),
            minor,
        )
        debug(older)
        if not has_compat:
            say(older + "; W&B tracking is off")
            return None
    if has_compat:
        candidates.append(compat)
    first_error: Optional[BaseException] = None
    for directory in candidates:
        module, error = _import_from(directory)
        if module is not None:
            if directory == compat:
                debug("recording with the compat wandb %s for Python %s" % (getattr(module, "__version__", "?"), minor))
            return module
        first_error = first_error or error
    say("the vendored wandb for Python %s failed to import (%s); W&B tracking is off" % (minor, describe(first_error)))
    return None


def _strtobool(value):
    """distutils.util.strtobool, as the standard library had it until 3.12."""
    value = value.lower()
    if value in ("y", "yes", "t", "true", "on", "1"):
        return 1
    if value in ("n", "no", "f", "false", "off", "0"):
        return 0
    raise ValueError("invalid truth value %r" % (value,))


def _find_executable(executable, path=None):
    """distutils.spawn.find_executable, as the standard library had it until 3.12 (POSIX)."""
    if os.path.isfile(executable):
        return executable
    if path is None:
        path = os.environ.get("PATH", os.defpath)
    for directory in (path or "").split(os.pathsep):
        candidate = os.path.join(directory, executable)
        if os.path.isfile(candidate):
            return candidate
    return None


def _lend_distutils() -> bool:
    """On CPython 3.12+ (no distutils), lend wandb 0.18.7 the two distutils functions its import needs.

    The compat wandb (0.18.7) imports `distutils.util.strtobool` and its docker-pycreds imports
    `distutils.spawn` (for `find_executable`) when they are imported; a pip install gets them from
    setuptools' copy through a .pth file, which a directory appended to sys.path does not run. They are
    lent for the import only: the caller takes them out of sys.modules again (wandb keeps what it bound),
    so the component's own `import distutils` fails as it did before.
    """
    if sys.version_info < (3, 12) or "distutils" in sys.modules:
        return False
    try:
        if importlib.util.find_spec("distutils") is not None:
            return False
    except (ImportError, ValueError):
        return False
    package = ModuleType("distutils")
    package.__path__ = []  # a package, so `import distutils.util` looks in sys.modules only
    util = ModuleType("distutils.util")
    util.strtobool = _strtobool
    spawn = ModuleType("distutils.spawn")
    spawn.find_executable = _find_executable
    package.util, package.spawn = util, spawn
    sys.modules.update({"distutils": package, "distutils.util": util, "distutils.spawn": spawn})
    return True


def _import_from(directory: str) -> Tuple[Optional[ModuleType], Optional[BaseException]]:
    """(wandb imported with directory appended to sys.path, None), or (None, the error) with all undone."""
    modules_before = set(sys.modules)
    sys.path.append(directory)
    lent = _lend_distutils()
    try:
        import wandb
    except Exception as error:
        while directory in sys.path:
            sys.path.remove(directory)
        added = set(sys.modules) - modules_before
        for name in [name for name in added if name.split(".")[0] in ("wandb", "distutils")]:
            sys.modules.pop(name, None)
        for name in [name for name in added if _under(sys.modules.get(name), directory)]:
            sys.modules.pop(name, None)
        importlib.invalidate_caches()
        return None, error
    if lent:  # wandb keeps what it bound; the component sees no distutils, as before
        for name in set(sys.modules) - modules_before:
            if name.split(".")[0] == "distutils":
                del sys.modules[name]
    return wandb, None
