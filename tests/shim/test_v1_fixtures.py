"""KFP v1 components from the fixture pods: the real generated programs (`sh -ec ... python3 -u <program>`)
run with and without the shim; outcome identical, W&B run holds inputs, return value, files.

Python 3.11 with wandb 0.31.0 (the generated program needs no kfp at run time), WANDB_MODE=offline.
"""

from __future__ import annotations

import pytest

from tests.fixtures.pods import fixtures_of_kind
from tests.shim.conftest import v1_argument_rewrite
from tests.shim.test_py37_and_compat import assert_component_file
from tests.shim.wandb_reader import read_only_run
from webhook.shim import contract

V1_FIXTURES = fixtures_of_kind(contract.KIND_V1_COMPONENT)


@pytest.mark.parametrize("name", V1_FIXTURES)
def test_v1_component_outcome_unchanged_and_recorded(component, name):
    case = component(name)
    _baseline, recorded = case.compared()

    entry = case.entry
    function = entry["function"]
    run = case.identified_run(recorded)
    for output, value in (entry.get("outputs") or {}).items():
        assert run.summary[function + "." + output] == value
    file_inputs = {name for name in (entry.get("input_files") or {})}
    for key, value in (entry.get("inputs") or {}).items():
        if not key.endswith(("_path", "_file")):
            assert run.config[key] == value
    for name in file_inputs:
        reference = run.config[name]
        assert reference["path"].endswith("/inputs/" + name + "/data")
        assert reference["artifact"] == "referenced"  # offline: use_artifact is refused
        assert reference["bytes"] == len(entry["input_files"][name]["content"].encode())
    assert_component_file(run, function, case.pod_env()[contract.COMPONENT_SPEC])
    assert len(recorded.shim_lines) == 1 and "wandb sync" in recorded.shim_lines[0]


def test_v1_output_path_file_is_logged_as_artifact(component):
    case = component("v1-count-lines")
    recorded = case.run(shim=True)
    assert recorded.returncode == 0, recorded.stderr
    run = read_only_run(recorded.wandb_dir)
    artifact = run.artifact("count-lines-summary")  # the Argo artifact's name (lineage)
    written = recorded.files["outputs/summary/data"]
    assert [entry["size"] for entry in artifact["entries"]] == [len(written)]
    assert artifact["type"] == "String" and artifact["metadata"]["kfp_output"] == "summary"
    assert run.config["prefix"] == "lines"
    assert run.summary["count_lines.Output"] == 3
    entry = run.config["kubeflow"]["inputs"]["text"]  # a pipeline-level input: Argo names it `text`
    assert (entry["artifact"], entry["argo_artifact"], entry["type"]) == ("text", "text", "String")


def test_v1_without_argo_artifacts_keeps_component_names(component):
    """A pod the webhook found no Argo template in (hand-written): `<component>.<output>` as before."""
    recorded = component("v1-count-lines").run(shim=True, extra_env={contract.ARGO_ARTIFACTS: None})
    assert recorded.returncode == 0, recorded.stderr
    run = read_only_run(recorded.wandb_dir)
    assert run.artifact("count_lines.summary")["type"] == "String"
    entry = run.config["kubeflow"]["inputs"]["text"]
    assert entry["artifact"] == "text" and "argo_artifact" not in entry


def test_v1_without_component_spec_uses_argument_names(component):
    case = component("v1-divide")
    recorded = case.run(shim=True, extra_env={contract.COMPONENT_SPEC: ""})
    assert recorded.returncode == 0, recorded.stderr
    run = read_only_run(recorded.wandb_dir)
    assert run.config["dividend"] == 17 and run.config["divisor"] == 5
    assert run.summary["divide.quotient"] == 3 and run.summary["divide.remainder"] == 2


def test_v1_failing_component_outcome_unchanged_and_run_failed(component):
    case = component("v1-divide", rewrite=v1_argument_rewrite("--divisor", "0"))
    _recorded, run = case.compared_failure()
    assert run.config["divisor"] == 0
