"""The shim's only voice: short lines on stderr, each prefixed so they can be told from the component's.

Also hides the shim's own frames from a traceback the component's exception prints, so stderr reads as
it would without the shim. Nothing here prints environment values or keys.
"""

import contextlib
import os
import sys

from . import contract

PREFIX = "wandb-kfp-shim: "
_SHIM_DIR = os.path.dirname(os.path.abspath(__file__))


def say(message):
    """Write one prefixed line per line of `message` to stderr; never raises."""
    with contextlib.suppress(Exception):
        text = "".join(PREFIX + line + "\n" for line in str(message).splitlines() or [""])
        sys.stderr.write(text)
        sys.stderr.flush()


def debug(message):
    """say(message) only when WANDB_KFP_SHIM_DEBUG is set (troubleshooting lines, off by default)."""
    if os.environ.get(contract.SHIM_DEBUG, "") not in ("", "0"):
        say(message)


def describe(exc):
    """The type of a shim-side exception, for messages: type names only, messages may hold secrets."""
    return type(exc).__module__ + "." + type(exc).__qualname__


def _is_shim_frame(tb):
    """True when a traceback entry's code lives in this package."""
    filename = tb.tb_frame.f_code.co_filename
    return os.path.dirname(os.path.abspath(filename)) == _SHIM_DIR


def strip_shim_frames(tb):
    """The same traceback chain without the entries of shim code (which only wraps calls)."""
    head = tb
    while head is not None and _is_shim_frame(head):
        head = head.tb_next
    node = head
    while node is not None:
        following = node.tb_next
        while following is not None and _is_shim_frame(following):
            following = following.tb_next
        node.tb_next = following
        node = following
    return head


_hook_installed = [False]


def hide_shim_frames_at_exit():
    """Make the top-level traceback print without shim frames, as it would without the shim.

    Called while the component's exception passes through the shim's wrapper. Chains to whatever
    excepthook is in place (the image's own, or Python's); wandb's old exit hooks are skipped over.
    """
    if _hook_installed[0]:
        return
    previous = sys.excepthook
    owner = getattr(previous, "__self__", None)
    if owner is not None and type(owner).__name__ == "ExitHooks":
        previous = getattr(owner, "_orig_excepthook", None) or sys.__excepthook__

    def excepthook(exc_type, exc, tb):
        with contextlib.suppress(Exception):
            tb = strip_shim_frames(tb)
            if exc is not None:
                exc.__traceback__ = tb
        previous(exc_type, exc, tb)

    sys.excepthook = excepthook
    _hook_installed[0] = True
