"""wandb-kfp-shim bootstrap: turn W&B tracking on in a KFP component's own Python process, nowhere else.

The webhook puts this file's directory first on PYTHONPATH, so every Python in the container runs it at
start-up: pip, compilers, venv, user scripts, the component. It therefore
  * chains to the image's own sitecustomize (if any), exactly once, so nothing the image set up is lost;
  * decides from sys.argv alone (plus /proc/self/cmdline for `-m` before 3.10 and reading the script when
    argv[0] is a file), imports nothing new, and returns at once for anything but a KFP component;
  * never raises and never calls sys.exit (that aborts interpreter start-up): failures are one stderr line.
The syntax stays parseable by Python 2.7 and 3.6+ so an old image only gets one line, never a traceback.
The package lives next to this directory; its location and the KFP detection patterns are the contract
facts repeated here, because they are needed before the contract module can be read (tests check that
they stay equal to webhook/shim/contract.py).
"""

import os
import sys

_PREFIX = "wandb-kfp-shim: "
#: Prints the activation decision (with its reason) on stderr; off by default.
_DEBUG_ENV = "WANDB_KFP_SHIM_DEBUG"
#: Where the shim package sits under the shim root (contract.LIB_SUBDIR and contract.SHIM_PACKAGE_NAME).
_LIB_SUBDIR = "lib"
_PACKAGE = "wandb_kfp_shim"
#: `python -m` modules that run a KFP v2 component (kfp >= 2.1, and 2.0.x).
_V2_MODULES = ("kfp.dsl.executor_main", "kfp.components.executor_main")
#: Lines every KFP v1 `create_component_from_func` program has, in this order.
_V1_MARKERS = (b"_parsed_args = vars(_parser.parse_args())", b"\n_outputs = ", b"(**_parsed_args)")
#: Scripts larger than this are not KFP v1 programs worth reading at start-up.
_MAX_PROGRAM_BYTES = 8 * 1024 * 1024
#: sys.modules key present while the image's sitecustomize is being chained (another copy of this file,
#: reached through a second bootstrap entry on PYTHONPATH, must then only chain further).
_CHAIN_GUARD = "_wandb_kfp_shim_bootstrap_chaining"
_SUPPORTED = ((3, 7), (3, 13))
_ARCHES = ("x86_64", "aarch64")


def _say(message):
    try:
        sys.stderr.write(_PREFIX + message + "\n")
        sys.stderr.flush()
    except Exception:  # noqa: S110  (no stderr left to say anything on)
        pass


def _debug(message):
    if os.environ.get(_DEBUG_ENV, "") not in ("", "0"):
        _say(message)


def _chain_image_sitecustomize():
    """Import the next sitecustomize on sys.path (the image's), as Python would have without us."""
    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    ours = sys.modules.get("sitecustomize")
    removed = []
    for index in range(len(sys.path) - 1, -1, -1):
        entry = sys.path[index]
        if entry and os.path.realpath(entry) == here:
            removed.append((index, entry))
            del sys.path[index]
    sys.modules[_CHAIN_GUARD] = ours
    sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401  (the image's own, now that ours is off the path)
    except ImportError as error:
        if getattr(error, "name", "sitecustomize") != "sitecustomize":
            _report_image_error(error)
    except Exception as error:
        _report_image_error(error)
    finally:
        for index, entry in reversed(removed):
            if entry not in sys.path:
                sys.path.insert(min(index, len(sys.path)), entry)
        if sys.modules.get("sitecustomize") is None:
            sys.modules["sitecustomize"] = ours
        sys.modules.pop(_CHAIN_GUARD, None)


def _report_image_error(error):
    """Same message site.py prints when a sitecustomize fails, so the image behaves as without us."""
    if getattr(sys.flags, "verbose", 0):
        sys.excepthook(*sys.exc_info())
    else:
        sys.stderr.write(
            "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n%s: %s\n" % (error.__class__.__name__, error)
        )


def _proc_cmdline():
    """The interpreter's arguments after argv[0], from the kernel (sys.orig_argv exists only on 3.10+)."""
    with open("/proc/self/cmdline", "rb") as handle:
        words = handle.read().split(b"\0")
    if words and words[-1] == b"":
        words.pop()
    return [word.decode("utf-8", "surrogateescape" if sys.version_info[0] > 2 else "replace") for word in words[1:]]


def _parse_interpreter_args(args):
    """('-m', module) | ('script', path) | ('-c', None) | ('stdin', None) for python's own arguments."""
    index = 0
    while index < len(args):
        word = args[index]
        if word == "--":
            return ("script", args[index + 1]) if index + 1 < len(args) else ("stdin", None)
        if word == "-" or not word.startswith("-"):
            return ("stdin", None) if word == "-" else ("script", word)
        if word.startswith("--"):
            index += 2 if word == "--check-hash-based-pycs" else 1
            continue
        letters = word[1:]
        skip_next = False
        for position, letter in enumerate(letters):
            rest = letters[position + 1 :]
            if letter in "cm":
                value = rest or (args[index + 1] if index + 1 < len(args) else "")
                return ("-" + letter, value if letter == "m" else None)
            if letter in "WXQ":
                skip_next = not rest
                break
        index += 2 if skip_next else 1
    return ("stdin", None)


def _command():
    """What this interpreter was asked to run, as cheaply as sys.argv allows."""
    argv = getattr(sys, "argv", None)
    if argv:
        first = argv[0]
        if first == "-c":
            return ("-c", None)
        if first in ("", "-"):
            return ("stdin", None)
        if first != "-m":
            return ("script", first)
    orig_argv = getattr(sys, "orig_argv", None)
    return _parse_interpreter_args(orig_argv[1:] if orig_argv else _proc_cmdline())


def _is_kfp_v1_program(path):
    """Whether the script is a KFP v1 lightweight-component program (generated by the SDK)."""
    try:
        if os.stat(path).st_size > _MAX_PROGRAM_BYTES:
            return False
        with open(path, "rb") as handle:
            source = handle.read()
    except (OSError, IOError, ValueError):
        return False
    position = 0
    for marker in _V1_MARKERS:
        position = source.find(marker, position)
        if position < 0:
            return False
    return True


def _component_kind():
    """'v1', 'v2' or None, with the reason, for the debug line."""
    kind, value = _command()
    if kind == "-m":
        if value in _V2_MODULES:
            return "v2", "python -m " + value
        return None, "python -m " + str(value)
    if kind == "script":
        if _is_kfp_v1_program(value):
            return "v1", "KFP v1 program " + value
        return None, "script " + value
    return None, "python " + kind


def _shim_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_contract(root):
    """The contract module's names, read without importing the shim package (cheap, no sys.path change)."""
    path = os.path.join(root, _LIB_SUBDIR, _PACKAGE, "contract.py")
    with open(path, "rb") as handle:
        code = compile(handle.read(), path, "exec")
    names = {"__name__": _PACKAGE + ".contract", "__file__": path}
    exec(code, names)  # noqa: S102  (our own constants file; leaves sys.path and sys.modules alone)
    return names


def _unsupported_reason():
    """Why this interpreter/platform cannot run the shim, or None."""
    version = sys.version_info[:2]
    if version < _SUPPORTED[0] or version > _SUPPORTED[1]:
        return "Python %d.%d is not supported (needs %d.%d-%d.%d)" % (version + _SUPPORTED[0] + _SUPPORTED[1])
    if sys.implementation.name != "cpython":
        return "%s is not supported (needs CPython)" % sys.implementation.name
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        libc = ""
    if not libc.startswith("glibc"):
        return "this C library is not glibc (musl/alpine images are not supported)"
    machine = os.uname()[4]
    if machine not in _ARCHES:
        return "CPU architecture %s is not supported (needs %s)" % (machine, " or ".join(_ARCHES))
    return None


def _apply_defaults(contract):
    """WANDB_KFP_DEFAULT_X -> X where X is missing (the webhook's values for a container with envFrom);
    done for every component process, recorded or not, so it sees the env any other pod gets."""
    prefix = contract["DEFAULT_PREFIX"]
    for name in [key for key in os.environ if key.startswith(prefix)]:
        target = name[len(prefix) :]
        value = os.environ.pop(name)
        if target in contract["STANDARD_WANDB_VARIABLES"] and not os.environ.get(target):
            os.environ[target] = value


def _activate(kind, root, contract):
    lib = os.path.join(root, _LIB_SUBDIR)
    if lib not in sys.path:
        sys.path.append(lib)
    os.environ[contract["ACTIVE_MARKER"]] = str(os.getpid())
    module = __import__(_PACKAGE + ".activate", fromlist=["activate"])
    getattr(module, "activate_" + kind)()


def _main():
    if _CHAIN_GUARD in sys.modules:
        _chain_image_sitecustomize()  # a second copy of the bootstrap: pass the chain on, decide nothing
        return
    _chain_image_sitecustomize()
    kind, reason = _component_kind()
    if kind is None:
        _debug("inactive: " + reason)
        return
    root = _shim_root()
    unsupported = _unsupported_reason()
    try:
        contract = _load_contract(root)
    except Exception:
        if unsupported is None:
            raise
        contract = None  # too old to even read the contract: say why we stay off, once
    if contract is not None:
        _apply_defaults(contract)
        switch = contract["SHIM_SWITCH"]
        if os.environ.get(switch, "").strip().lower() in contract["OFF_VALUES"]:
            _debug("inactive: %s=%s (%s)" % (switch, os.environ[switch], reason))
            return
        active_pid = os.environ.get(contract["ACTIVE_MARKER"], "")
        if active_pid and active_pid != str(os.getpid()):
            _debug("inactive: child of active component process %s (%s)" % (active_pid, reason))
            return
    if unsupported is not None:
        _say(unsupported + "; W&B tracking is off for this component")
        return
    _debug("active %s: %s" % (kind, reason))
    _activate(kind, root, contract)


try:
    _main()
except BaseException as _error:  # start-up must go on whatever happens here (even SystemExit)
    # The type only: an exception's message may quote environment values.
    _say("not tracking this component: %s.%s" % (_error.__class__.__module__, _error.__class__.__name__))
