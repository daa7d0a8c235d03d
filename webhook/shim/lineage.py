"""Lineage: one W&B artifact name and digest per pipeline artifact, derived alike by producer and consumer.

A step's output and the next step's input are the same pipeline artifact. The producer logs it and the
consumer uses it under one name with one digest, so W&B draws the pipeline's DAG as its artifact graph.
Both sides derive the name only from what their own pod carries:

- KFP v2: the artifact URI, which is the same string in the producer's `outputs` and the consumer's
  `inputs` of executor_input. The KFP driver writes `<run root>/<run id>/<task>/<salt uuid>/<output>`
  (KFP < 2.4: no salt); kfp.local writes `<root>/<pipeline>-<timestamp>/[<loop iteration>/]<task>/<output>`.
  The name is `<task>.<output>`.
- KFP v1: the Argo artifact name (`<producer task>-<output>` in KFP 1.8), which the producing template
  lists under `outputs.artifacts` and the consuming template under `inputs.artifacts`, each with the
  local path. The webhook copies name and path into WANDB_KFP_ARGO_ARTIFACTS; the shim looks the
  component's OutputPath / InputPath files up there by path.

Where no name can be derived, callers keep their previous names. The digest follows from how both sides
fill the artifact: the same entries (same file name, same bytes, or the same reference digest). Runtime
shim code: stdlib + wandb only, parseable by Python 3.7.
"""

import importlib
import json
import os
import re

from . import contract, faults
from .messages import describe, say
from .recorder import KFP_META_KEY
from .values import tree_size

#: Config key, under config["kubeflow"], of the per-input lineage entries.
INPUTS_KEY = "inputs"
#: Type of a v1 Argo artifact whose component spec gives none, on both sides.
V1_DEFAULT_TYPE = "kfp_output"

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: kfp.local's pipeline resource name: `<pipeline>-%Y-%m-%d-%H-%M-%S-%f`.
_LOCAL_PIPELINE_RUN = re.compile(r"-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-\d{6}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# --- KFP v2: names from artifact URIs ------------------------------------------------------------
def uri_segments(uri):
    """The path segments of an artifact URI or local path (scheme, query and empty segments dropped)."""
    text = _SCHEME.sub("", str(uri or ""), count=1)
    text = text.split("?", 1)[0].split("#", 1)[0]
    return [segment for segment in text.split("/") if segment]


def v2_source(uri):
    """(producer task, output name) of a KFP v2 artifact URI, or None when the URI has no KFP layout."""
    segments = uri_segments(uri)
    if len(segments) >= 4 and _UUID.match(segments[-2]) and _UUID.match(segments[-4]):
        return segments[-3], segments[-1]  # KFP driver 2.4+: <run id>/<task>/<salt>/<output>
    if len(segments) >= 3 and _UUID.match(segments[-3]):
        return segments[-2], segments[-1]  # KFP driver before 2.4: <run id>/<task>/<output>
    if (
        len(segments) >= 3
        and not _SCHEME.match(str(uri))
        and any(_LOCAL_PIPELINE_RUN.search(segment) for segment in segments[:-2])
    ):
        return segments[-2], segments[-1]  # kfp.local: <pipeline>-<timestamp>/.../<task>/<output>
    return None


def v2_artifact_name(uri):
    """`<producer task>.<output>` for a KFP v2 artifact URI, or None."""
    source = v2_source(uri)
    return source[0] + "." + source[1] if source else None


# --- KFP v1: names from the Argo template (via the webhook) ---------------------------------------
def argo_artifacts():
    """({input path: Argo artifact name}, {output path: Argo artifact name}) from WANDB_KFP_ARGO_ARTIFACTS."""
    text = os.environ.get(contract.ARGO_ARTIFACTS) or ""
    if not text or len(text) > contract.ARGO_ARTIFACTS_MAX_CHARS:
        return {}, {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}, {}
    if not isinstance(value, dict):
        return {}, {}
    return _path_map(value.get("inputs")), _path_map(value.get("outputs"))


def _path_map(value):
    if not isinstance(value, dict):
        return {}
    return {str(path): str(name) for path, name in value.items() if path and name}


def v1_input_name(path):
    """The Argo artifact name of an InputPath file, or None when the pod did not say."""
    return argo_artifacts()[0].get(path)


def v1_output_name(path):
    """The Argo artifact name of an OutputPath file, or None when the pod did not say."""
    return argo_artifacts()[1].get(path)


# --- building the artifact both sides build ------------------------------------------------------
def add_local(recorder, artifact, path, limit, identity=None):
    """Put a local file or directory into `artifact` the same way on both sides of an edge.

    Up to `limit` bytes: uploaded (entries named after the file, digests from the bytes). Larger: one
    reference entry. With an `identity` both sides share (v1: the Argo artifact), the reference's digest
    is that identity, as for remote URIs, because producer and consumer see the bytes at different
    paths; without one, wandb's own unchecked `file://` reference (digest from the path).
    """
    if identity is None or tree_size(path) <= limit:
        return recorder.add_local(artifact, path, limit)
    entry_type = importlib.import_module(
        recorder.wandb.__name__ + ".sdk.artifacts.artifact_manifest_entry"
    ).ArtifactManifestEntry
    name = os.path.basename(os.path.normpath(path)) or "data"
    reference = "file://" + os.path.abspath(path)
    artifact.manifest.add_entry(entry_type(path=name, ref=reference, digest=identity, size=tree_size(path)))
    return "reference"


def v1_identity(argo_name):
    """What names one v1 Argo artifact of this workflow on both sides (the digest of large references)."""
    workflow = os.environ.get(contract.WORKFLOW_NAME) or ""
    return "argo://" + workflow + "/" + argo_name


def v1_input_artifact(recorder, input_name, type_name, path, limit):
    """(artifact, lineage entry) of an InputPath file: named after its Argo artifact when known."""
    argo_name = v1_input_name(path)
    if argo_name is None:
        artifact = recorder.new_artifact(input_name, type_name)
        recorder.add_local(artifact, path, limit)
        return artifact, entry_of(artifact)
    artifact = recorder.new_artifact(argo_name, type_name or V1_DEFAULT_TYPE)
    add_local(recorder, artifact, path, limit, v1_identity(argo_name))
    entry = entry_of(artifact)
    entry["argo_artifact"] = argo_name
    return artifact, entry


def v1_output_artifact(recorder, output_name, type_name, path, limit):
    """The artifact an OutputPath file is logged as: its Argo artifact's name when known."""
    argo_name = v1_output_name(path)
    if argo_name is None:
        name = recorder.component + "." + output_name
        artifact = recorder.new_artifact(name, type_name or V1_DEFAULT_TYPE, {"path": path})
        recorder.add_local(artifact, path, limit)
        return artifact
    metadata = {"path": path, "argo_artifact": argo_name, "kfp_output": output_name}
    artifact = recorder.new_artifact(argo_name, type_name or V1_DEFAULT_TYPE, metadata)
    add_local(recorder, artifact, path, limit, v1_identity(argo_name))
    return artifact


def v2_output_artifact(recorder, output_name, schema, metadata, uri, path, remote, limit):
    """The artifact a v2 output is logged as: `<task>.<output>` from its URI, else `<component>.<output>`."""
    name = v2_artifact_name(uri) or recorder.component + "." + output_name
    artifact = recorder.new_artifact(name, schema, metadata)
    _fill_v2(recorder, artifact, uri, path, remote, limit)
    return artifact


def v2_input_artifact(recorder, input_name, reference, path, remote, limit):
    """(artifact, lineage entry) of one v2 input artifact, named and filled as its producer did it.

    (None, None) when there is nothing to describe (a local artifact that is not there).
    """
    uri = reference.get("uri") or ""
    if not remote and not (path and os.path.exists(path)):
        return None, None
    source = v2_source(uri)
    name = source[0] + "." + source[1] if source else input_name
    artifact = recorder.new_artifact(name, reference.get("schemaTitle"), reference.get("metadata"))
    _fill_v2(recorder, artifact, uri, path, remote, limit)
    entry = entry_of(artifact)
    entry["uri"] = uri
    if source:
        entry["producer"] = source[0]
        entry["output"] = source[1]
    return artifact, entry


def _fill_v2(recorder, artifact, uri, path, remote, limit):
    """The one way both sides fill a v2 artifact: an object-store URI as a reference whose digest is
    the URI; a local file or directory uploaded up to `limit`, else wandb's unchecked `file://`
    reference (its digest comes from the path, which both sides share because it comes from the URI)."""
    if remote:
        recorder.add_remote(artifact, uri)
    else:
        recorder.add_local(artifact, path, limit)


def entry_of(artifact):
    """The lineage entry of an input artifact: the W&B name, type and digest the run uses it under."""
    return {"artifact": artifact.name, "type": artifact.type, "digest": artifact.digest}


def record_input_lineage(recorder, entries):
    """config["kubeflow"]["inputs"][<input>] = lineage entry (a list for list inputs); never raises.

    Offline, W&B cannot record used artifacts, so this is what survives `wandb sync` of the relation.
    """
    try:
        faults.check("lineage")
        if not entries or not recorder.active():
            return
        kubeflow = recorder.run.config.get(KFP_META_KEY)
        merged = dict(kubeflow) if isinstance(kubeflow, dict) else {}
        inputs = dict(merged.get(INPUTS_KEY) or {})
        inputs.update(entries)
        merged[INPUTS_KEY] = inputs
        recorder.update_config({KFP_META_KEY: merged})
    except Exception as exc:
        say("could not record the inputs' lineage (" + describe(exc) + ")")
