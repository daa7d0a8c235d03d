"""KFP v2 components from the fixture pods, run for real (pip step, kfp.dsl.executor_main, the component),
with and without the shim: the outcome must be identical and the W&B run must hold inputs and outputs.

Python 3.11, kfp 2.17.3, the image's own wandb 0.31.0, WANDB_MODE=offline; runs read back from .wandb files.
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures.pods import fixtures_of_kind
from tests.shim.conftest import executor_parameter_rewrite
from tests.shim.test_py37_and_compat import assert_component_file
from tests.shim.wandb_reader import read_only_run
from webhook.shim import contract

V2_FIXTURES = fixtures_of_kind(contract.KIND_V2_EXECUTOR)


@pytest.mark.parametrize("name", V2_FIXTURES)
def test_v2_component_outcome_unchanged_and_recorded(component, name):
    case = component(name)
    baseline, recorded = case.compared()
    assert list(baseline.wandb_dir.iterdir()) == []  # nothing records without the shim

    entry = case.entry
    function = entry["function"]
    run = case.identified_run(recorded)
    assert run.config["kubeflow"]["pod"] == entry["pod_name"]
    assert run.config["kubeflow"]["kfp_sdk"] == "2.17.3"
    for key, value in (entry.get("inputs") or {}).items():
        assert run.config[key] == value
    for key, value in (entry.get("outputs") or {}).items():
        assert run.summary[function + "." + key] == value
    for output, expected in (entry.get("output_artifacts") or {}).items():
        schema = expected["schema_title"]
        if "content" in expected:  # named `<task>.<output>` from its URI (lineage)
            artifact = run.artifact(entry["component"] + "." + output)
            assert artifact["type"] == schema
            assert [e["size"] for e in artifact["entries"]] == [len(expected["content"].encode())]
            for key, value in (expected.get("metadata") or {}).items():
                assert artifact["metadata"][key] == value
    assert_component_file(run, function, case.pod_env()[contract.COMPONENT_SPEC])
    # the only shim line in an offline run is the one that says how to upload it
    assert len(recorded.shim_lines) == 1
    assert "wandb sync " + str(recorded.wandb_dir) in recorded.shim_lines[0]


def test_v2_input_artifact_is_referenced_in_config(component):
    case = component("v2-train")
    recorded = case.run(shim=True)
    assert recorded.returncode == 0, recorded.stderr
    run = read_only_run(recorded.wandb_dir)
    reference = run.config["dataset"]
    expected = case.entry["input_artifacts"]["dataset"]
    assert reference["schemaTitle"] == "system.Dataset"
    assert reference["uri"] == expected["uri"].replace("minio://", str(case.work) + "/minio/")
    assert reference["metadata"]["rows"] == 4
    assert run.used_artifacts == []  # offline wandb cannot use_artifact; the config holds the reference


def test_v2_metrics_and_classification_metrics(component):
    recorded = component("v2-evaluate").run(shim=True)
    assert recorded.returncode == 0, recorded.stderr
    run = read_only_run(recorded.wandb_dir)
    assert run.summary["accuracy"] == 0.75
    assert run.summary["threshold"] == 0.5
    charts = run.config["_wandb"]["visualize"]
    matrix = charts["classification.confusion_matrix"]["panel_config"]
    assert matrix["panelDefId"] == "wandb/confusion_matrix/v1"
    roc = charts["classification.roc"]["panel_config"]
    assert roc["panelDefId"] == "wandb/area-under-curve/v0"
    assert run.summary["classification.confusion_matrix_table"]["nrows"] == 4  # 2x2 cells
    assert run.summary["classification.roc_table"]["nrows"] == 3
    tables = {artifact["type"] for artifact in run.artifacts}
    assert "run_table" in tables


def test_v2_failing_component_outcome_unchanged_and_run_failed(component):
    case = component("v2-divide", rewrite=executor_parameter_rewrite("divisor", 0))
    recorded, run = case.compared_failure()  # same traceback: the shim's frames are hidden
    assert "wandb_kfp_shim" not in recorded.stderr.replace("wandb-kfp-shim:", "")
    assert "division" in run.summary["exception_message"]
    assert run.config["divisor"] == 0
    assert not any(key.startswith("divide.") for key in run.summary)


def test_v2_output_parameter_written_through_output_file_is_in_summary(component):
    recorded = component("v2-train").run(shim=True)
    run = read_only_run(recorded.wandb_dir)
    executor_output = json.loads(recorded.files["kfp_outputs/output_metadata.json"])
    assert run.summary["train.Output"] == executor_output["parameterValues"]["Output"] == "weight=2.0"
    assert run.artifact("train.model")["metadata"]["framework"] == "closed-form"


NOISY_BODY = '''    """Sum of two numbers."""
    import sys

    print("h\\u00e9llo from the component", a, b)
    sys.stdout.write("partial line without newline")
    sys.stdout.flush()
    sys.stderr.write("a warning line\\n")
    sys.stderr.write("stderr without newline")
    print("\\r\\n\\tcontrol characters", file=sys.stderr)
    return a + b
'''


def _noisy_add(argv: list[str]) -> list[str]:
    """The v2-add component with a body that prints partial lines, non-ASCII and control characters."""
    return [arg.replace('    """Sum of two numbers."""\n    return a + b\n', NOISY_BODY) for arg in argv]


def test_v2_component_output_streams_byte_identical(component):
    case = component("v2-add", rewrite=_noisy_add)
    assert "partial line without newline" in " ".join(case.argv())
    baseline = case.run(shim=False)
    recorded = case.run(shim=True)
    assert baseline.returncode == 0, baseline.stderr
    assert "partial line without newline" in baseline.stdout
    assert recorded.outcome() == baseline.outcome()
    assert read_only_run(recorded.wandb_dir).summary["add.Output"] == 3.75
