"""What the shim adds to a run once it has started: the run's link in the step's logs, the component file.

* An online run's URL goes to stderr as one line, `wandb-kfp-shim: W&B run: <url>`, so it shows in the
  step's logs in the KFP UI (`WANDB_KFP_RUN_LINK=off` turns it off; offline runs keep their single
  `wandb sync` line instead).
* The component spec the pod carries (`WANDB_KFP_COMPONENT_SPEC`: KFP v1's component_spec annotation, KFP
  v2's launcher --component_spec) is saved as `<component>.yaml`, as W&B's own `log_component_file` did:
  an artifact of type `kubeflow_component_file` named after the component, and a file in the run's files
  directory (uploaded with the run; an offline run also `run.save`s it, so `wandb sync` uploads it).
  Skipped when larger than WANDB_KFP_MAX_UPLOAD_BYTES.

Each step swallows its own errors (one `wandb-kfp-shim:` line). Runs in component images: Python 3.7+.
"""

import json
import os

from . import contract, faults
from .messages import describe, say

#: Artifact type of the component file, as W&B's KFP integration names it.
COMPONENT_FILE_TYPE = "kubeflow_component_file"
RUN_LINK_PREFIX = "W&B run: "


def after_start(recorder):
    """Everything this module adds, each step on its own: a failure in one never stops the other."""
    try:
        announce_run_link(recorder)
    except Exception as exc:
        say("could not print the W&B run link (" + describe(exc) + ")")
    try:
        save_component_file(recorder)
    except Exception as exc:
        say("could not save the component file in W&B (" + describe(exc) + ")")


def run_link_line(recorder):
    """`W&B run: <url>` for an online run when the link is wanted; None otherwise."""
    if os.environ.get(contract.RUN_LINK, "").strip().lower() in contract.OFF_VALUES:
        return None
    if not recorder.active() or recorder._is_offline():
        return None
    url = getattr(recorder.run, "url", None)
    return RUN_LINK_PREFIX + url if url else None


def announce_run_link(recorder):
    faults.check("run_link")
    line = run_link_line(recorder)
    if line:
        say(line)


def component_spec_document(text):
    """(file name suffix, bytes) of the component file for a spec JSON text; None when it is not JSON."""
    try:
        spec = json.loads(text)
    except ValueError:
        return None
    if not isinstance(spec, dict):
        return None
    try:
        import yaml

        return ".yaml", yaml.safe_dump(spec, sort_keys=False, allow_unicode=True).encode("utf-8")
    except Exception:
        return ".json", (json.dumps(spec, indent=2) + "\n").encode("utf-8")


def save_component_file(recorder):
    """Log the pod's component spec as the run's `kubeflow_component_file` artifact (offline: also a file)."""
    faults.check("component_file")
    text = os.environ.get(contract.COMPONENT_SPEC, "")
    if not text or not recorder.active():
        return None
    document = component_spec_document(text)
    if document is None:
        return None
    suffix, data = document
    from .values import artifact_name, max_upload_bytes

    if len(data) > max_upload_bytes():
        say("the component file (%d bytes) is over the upload limit; it is not saved in W&B" % len(data))
        return None
    run = recorder.run
    name = artifact_name(recorder.component)
    directory = run.dir
    path = os.path.join(directory, name + suffix)
    with open(path, "wb") as handle:
        handle.write(data)
    artifact = recorder.wandb.Artifact(name, type=COMPONENT_FILE_TYPE)
    artifact.add_file(path, name=name + suffix)
    run.log_artifact(artifact)
    if recorder._is_offline():
        run.save(path, base_path=directory, policy="now")
    return path
