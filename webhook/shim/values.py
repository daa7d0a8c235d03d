"""Small pure helpers the shim's recording uses: env reads, names and values W&B accepts, limits.

Runs in component images: stdlib only, Python 3.7-parseable.
"""

import json
import os
import re

from . import contract

_ARTIFACT_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
SUMMARY_TEXT_LIMIT = 2000


def env(name, default=None):
    """An environment value, with empty treated as absent."""
    value = os.environ.get(name)
    return value if value else default


def kfp_run_link():
    """`<WANDB_KUBEFLOW_URL>/#/runs/details/<KFP run id>`, or None when either part is unknown."""
    base_url = env(contract.WANDB_KUBEFLOW_URL)
    run_id = env(contract.KFP_RUN_ID)
    if not base_url or not run_id:
        return None
    return base_url.rstrip("/") + "/#/runs/details/" + run_id


def kfp_metadata(component, kind, extra=None):
    """Where the component ran, from the pod env the webhook sets; empty fields left out."""
    fields = {
        "component": component,
        "kind": kind,
        "run_id": env(contract.KFP_RUN_ID),
        "pipeline": env(contract.PIPELINE_NAME),
        "workflow": env(contract.WORKFLOW_NAME),
        "node": env(contract.NODE_NAME),
        "pod": env(contract.POD_NAME),
        "namespace": env(contract.POD_NAMESPACE),
    }
    fields.update(extra or {})
    return {key: value for key, value in fields.items() if value not in (None, "")}


def artifact_name(name):
    """A W&B artifact name (letters, digits, `_.-`) made from a KFP input/output name."""
    cleaned = _ARTIFACT_NAME_UNSAFE.sub("-", str(name)).strip("-.") or "artifact"
    return cleaned[:128]


def summary_value(value):
    """A JSON-friendly form of a component value for config/summary: as-is when it serialises."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        pass
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {key: summary_value(item) for key, item in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [summary_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): summary_value(item) for key, item in value.items()}
    text = repr(value)
    return text if len(text) <= SUMMARY_TEXT_LIMIT else text[:SUMMARY_TEXT_LIMIT] + "..."


def max_upload_bytes():
    """Largest local file or directory the shim uploads (bigger ones are logged by reference)."""
    try:
        return int(env(contract.MAX_UPLOAD_BYTES, contract.DEFAULT_MAX_UPLOAD_BYTES))
    except ValueError:
        return contract.DEFAULT_MAX_UPLOAD_BYTES


def init_timeout():
    """Seconds the online wandb.init may take before the shim goes offline."""
    try:
        return float(env(contract.INIT_TIMEOUT, contract.DEFAULT_INIT_TIMEOUT_SECONDS))
    except ValueError:
        return float(contract.DEFAULT_INIT_TIMEOUT_SECONDS)


def has_credentials():
    """True when wandb may find an API key: the env var or a netrc file (wandb's two sources)."""
    if env(contract.WANDB_API_KEY):
        return True
    netrc = env("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    return os.path.isfile(netrc)


def tree_size(path):
    """Bytes in a file or under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def exit_code_of(exc):
    """The process exit code an uncaught exception leads to (SystemExit keeps its own)."""
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1
