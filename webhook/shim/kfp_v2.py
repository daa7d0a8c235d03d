"""KFP v2 (`@dsl.component`): record the executor's call of the component function in a W&B run.

An import hook patches `Executor.execute` in `kfp.dsl.executor` (kfp 2.1+; `kfp.components.executor`
for kfp 2.0) as soon as the executor imports it. `execute` is the right hook point: it calls the function
and then writes the executor output file (output parameters and artifact metadata such as Metrics), so
wrapping it sees the inputs before and that file after, without touching `self.func` or its signature.
"""

import html
import importlib.abc
import json
import os
import sys
from typing import Any

from . import contract, faults, lineage
from .messages import describe, say
from .recorder import call_recorded, start_recorder
from .values import max_upload_bytes

#: Modules that define the v2 Executor: kfp 2.1+ and kfp 2.0.
EXECUTOR_MODULES = contract.V2_EXECUTOR_MODULES
_PATCHED_MARK = "_wandb_kfp_shim_original"
_REMOTE_MOUNTS = (("gs://", "/gcs/"), ("minio://", "/minio/"), ("s3://", "/s3/"))
_TEXT_SCHEMAS = {"system.HTML": "html", "system.Markdown": "markdown"}
_OUTPUT_PARAMETER_READ_LIMIT = 1024 * 1024


def install_import_hook():
    """Patch the executor now if it is loaded, else when it is first imported."""
    for name in EXECUTOR_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            patch_executor_module(module)
    if not any(isinstance(finder, _ExecutorFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ExecutorFinder())


class _ExecutorFinder(importlib.abc.MetaPathFinder):
    """Finds the executor modules through the other finders and wraps their loader to patch them."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in EXECUTOR_MODULES:
            return None
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = _PatchingLoader(spec.loader)
                    return spec
        except Exception as exc:
            say("could not hook the KFP executor (" + describe(exc) + "); not recording")
        return None


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then patches the Executor class in the fresh module."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        patch_executor_module(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


def patch_executor_module(module):
    """Wrap `module.Executor.execute` once; a failure leaves the executor untouched."""
    try:
        faults.check("hook")
        executor_class: Any = getattr(module, "Executor", None)
        original = getattr(executor_class, "execute", None)
        if original is None or getattr(original, _PATCHED_MARK, None) is not None:
            return

        def execute(self, *args, **kwargs):
            return record_execute(self, original, args, kwargs)

        execute.__doc__ = original.__doc__
        execute.__name__ = original.__name__
        setattr(execute, _PATCHED_MARK, original)
        executor_class.execute = execute
    except Exception as exc:
        say("could not hook the KFP executor (" + describe(exc) + "); not recording")


def component_function(executor):
    """The user's function the executor calls (`func` in kfp 2.3+, `_func` before)."""
    func = getattr(executor, "func", None) or getattr(executor, "_func", None)
    return getattr(func, "python_func", func)


def record_execute(executor, original, args, kwargs):
    """Run `original(executor, ...)` inside a W&B run; its result or exception passes through unchanged."""
    try:
        component = getattr(component_function(executor), "__name__", None) or "component"
    except Exception:
        component = "component"
    recorder = start_recorder(contract.KIND_V2_EXECUTOR, component, {"kfp_sdk": _kfp_version()})
    return call_recorded(
        recorder,
        original,
        (executor, *args),
        kwargs,
        lambda rec: record_inputs(rec, executor),
        lambda rec, result: record_outputs(rec, executor, result),
    )


def _kfp_version():
    """The kfp SDK version in the component's image."""
    kfp = sys.modules.get("kfp")
    return getattr(kfp, "__version__", None)


def _executor_input(executor):
    return getattr(executor, "executor_input", None) or getattr(executor, "_input", None) or {}


# --- inputs ---------------------------------------------------------------------------------------
def artifact_reference(runtime_artifact):
    """The fields of a KFP runtime artifact the run keeps: name, schemaTitle, uri, metadata."""
    return {
        "name": runtime_artifact.get("name", ""),
        "schemaTitle": (runtime_artifact.get("type") or {}).get("schemaTitle", ""),
        "uri": runtime_artifact.get("uri", ""),
        "metadata": runtime_artifact.get("metadata") or {},
    }


def local_path(uri):
    """Where a KFP artifact URI lives in the container (kfp's own gs/minio/s3 mount mapping)."""
    for prefix, mount in _REMOTE_MOUNTS:
        if uri.startswith(prefix):
            return mount + uri[len(prefix) :]
    if uri.startswith("file://"):
        return uri[len("file://") :]
    return uri


def is_remote(uri):
    return any(uri.startswith(prefix) for prefix, _mount in _REMOTE_MOUNTS)


def record_inputs(recorder, executor):
    """config = input parameter values + a reference per input artifact (also used online)."""
    inputs = _executor_input(executor).get("inputs") or {}
    config = dict(inputs.get("parameterValues") or {})
    lineage_entries = {}
    for name, holder in (inputs.get("artifacts") or {}).items():
        runtime_artifacts = (holder or {}).get("artifacts") or []
        references = [artifact_reference(item) for item in runtime_artifacts]
        if not references:
            continue
        config[name] = references[0] if len(references) == 1 else references
        entries = [entry for entry in (_use_input(recorder, name, reference) for reference in references) if entry]
        if entries:
            lineage_entries[name] = entries[0] if len(references) == 1 else entries
    recorder.update_config(config)
    lineage.record_input_lineage(recorder, lineage_entries)


def _use_input(recorder, name, reference):
    """The input artifact built as its producer logged it (lineage); online, used by the run.

    Returns its lineage entry (W&B name, type, digest, producer), or None; the entry is kept when W&B
    refuses the use (the config then still says what the run would have used).
    """
    entry = None
    try:
        uri = reference["uri"]
        path = local_path(uri) if uri else ""
        artifact, entry = lineage.v2_input_artifact(recorder, name, reference, path, is_remote(uri), max_upload_bytes())
        if artifact is not None:
            recorder.use_input_artifact(artifact)
    except Exception as exc:
        say("could not record input artifact " + name + " (" + describe(exc) + ")")
    return entry


# --- outputs --------------------------------------------------------------------------------------
def read_executor_output(executor, result):
    """The executor output written by execute(): the file it returned, else the one it was told to write."""
    path = result if isinstance(result, str) else None
    path = path or (_executor_input(executor).get("outputs") or {}).get("outputFile")
    if path and os.path.isfile(path):
        with open(path) as handle:
            return json.load(handle)
    in_memory = getattr(executor, "excutor_output", None) or getattr(executor, "_executor_output", None)
    return in_memory if isinstance(in_memory, dict) else {}


def _read_output_parameter_file(path):
    """An output parameter the function wrote to its OutputPath file (text, as KFP will read it)."""
    if not path or not os.path.isfile(path) or os.path.getsize(path) > _OUTPUT_PARAMETER_READ_LIMIT:
        return None
    with open(path) as handle:
        return handle.read()


def record_outputs(recorder, executor, result):
    """summary = output parameters and Metrics; charts for ClassificationMetrics; artifacts logged."""
    component = recorder.component
    output = read_executor_output(executor, result)
    spec_outputs = _executor_input(executor).get("outputs") or {}
    summary = {}
    for name, value in (output.get("parameterValues") or {}).items():
        summary[component + "." + name] = value
    for name, holder in (spec_outputs.get("parameters") or {}).items():
        key = component + "." + name
        if key not in summary:
            value = _read_output_parameter_file((holder or {}).get("outputFile"))
            if value is not None:
                summary[key] = value
    recorder.update_summary(summary)

    written = output.get("artifacts") or {}
    limit = max_upload_bytes()
    for name, holder in (spec_outputs.get("artifacts") or {}).items():
        try:
            declared = ((holder or {}).get("artifacts") or [{}])[0]
            final = ((written.get(name) or {}).get("artifacts") or [{}])[0]
            reference = artifact_reference(declared)
            reference["uri"] = final.get("uri") or reference["uri"]
            reference["metadata"] = final.get("metadata") or reference["metadata"]
            record_output_artifact(recorder, name, reference, limit)
        except Exception as exc:
            say("could not record output artifact " + name + " (" + describe(exc) + ")")


def record_output_artifact(recorder, name, reference, limit):
    """One declared output artifact: metrics/charts/HTML from it, then the artifact itself."""
    schema = reference["schemaTitle"]
    metadata = reference["metadata"]
    uri = reference["uri"]
    if schema == "system.Metrics":
        recorder.update_summary(metrics_summary(metadata))
    elif schema == "system.ClassificationMetrics":
        recorder.log(classification_charts(recorder.wandb, name, metadata))
    path = local_path(uri) if uri else ""
    exists = bool(path) and os.path.exists(path)
    if schema in _TEXT_SCHEMAS and exists and os.path.isfile(path) and os.path.getsize(path) <= limit:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        if _TEXT_SCHEMAS[schema] == "markdown":
            text = "<pre>" + html.escape(text) + "</pre>"
        recorder.log({name: recorder.wandb.Html(text)})
    if not exists:
        return
    metadata = dict(metadata, uri=uri)
    artifact = lineage.v2_output_artifact(recorder, name, schema, metadata, uri, path, is_remote(uri), limit)
    recorder.log_output_artifact(artifact)


def metrics_summary(metadata):
    """Scalar entries of a Metrics artifact (`log_metric(k, v)`), one summary key each."""
    return {
        key: value
        for key, value in (metadata or {}).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "display_name"
    }


def classification_charts(wandb, name, metadata):
    """wandb confusion matrix and ROC curve from ClassificationMetrics metadata, keyed `<output>.<chart>`."""
    charts = {}
    matrix = (metadata or {}).get("confusionMatrix") or {}
    classes = [spec.get("displayName", str(index)) for index, spec in enumerate(matrix.get("annotationSpecs") or [])]
    rows = [row.get("row") or [] for row in matrix.get("rows") or []]
    if classes and rows:
        data = [
            [classes[i], classes[j], count]
            for i, row in enumerate(rows)
            for j, count in enumerate(row)
            if i < len(classes) and j < len(classes)
        ]
        table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=data)
        charts[name + ".confusion_matrix"] = wandb.plot_table(
            "wandb/confusion_matrix/v1",
            table,
            {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
            {"title": name + " confusion matrix"},
        )
    points = (metadata or {}).get("confidenceMetrics") or []
    roc = [
        [
            name,
            float(point.get("falsePositiveRate", 0.0)),
            float(point.get("recall", 0.0)),
            float(point.get("confidenceThreshold", 0.0)),
        ]
        for point in points
        if isinstance(point, dict)
    ]
    if roc:
        table = wandb.Table(columns=["class", "fpr", "tpr", "threshold"], data=roc)
        charts[name + ".roc"] = wandb.plot_table(
            "wandb/area-under-curve/v0",
            table,
            {"x": "fpr", "y": "tpr", "class": "class"},
            {"title": name + " ROC", "x-axis-title": "False positive rate", "y-axis-title": "True positive rate"},
        )
    return charts
