"""kfp 2.0.1, the oldest KFP v2 SDK: `python -m kfp.components.executor_main`, `Executor._func`,
`execute()` returning None. Python 3.10 with the image's own wandb 0.18.7 (kfp 2.0 pins protobuf < 4,
which rules out wandb 0.31 in the same image).

kfp 2.0's Artifact.path is None for local URIs (it maps only gs/minio/s3), so the fixtures used here are
the parameter-only ones; the fixture's pip step (it would install kfp 2.17.3) is left out.
"""

from __future__ import annotations

import pytest

from tests.fixtures.pods import index_entry
from tests.shim.conftest import ComponentCase, executor_parameter_rewrite
from tests.shim.wandb_reader import read_only_run
from tests.support.venvs import ensure_venv


def _as_kfp20(argv: list[str]) -> list[str]:
    """The fixture's component command without its pip step, run through kfp 2.0's executor module."""
    start = argv.index("-ec") - 1
    return [arg.replace("kfp.dsl.executor_main", "kfp.components.executor_main") for arg in argv[start:]]


@pytest.fixture(scope="module")
def kfp20_python():
    try:
        return ensure_venv("s2-kfp20-wandb", "3.10", ["kfp==2.0.1", "wandb==0.18.7"])
    except LookupError as error:
        pytest.skip(str(error))


@pytest.mark.parametrize("name", ["v2-add", "v2-divide"])
def test_kfp20_component_recorded(kfp20_python, shim_dir, tmp_path, name):
    case = ComponentCase(name, kfp20_python, shim_dir, tmp_path, index_entry(name), _as_kfp20)
    baseline = case.run(shim=False)
    recorded = case.run(shim=True)
    assert baseline.returncode == 0, baseline.stderr
    assert "kfp.components.executor_main" in " ".join(case.argv())
    assert recorded.outcome() == baseline.outcome()
    run = read_only_run(recorded.wandb_dir)
    assert run.wandb_version.startswith("0.18.")
    assert run.config["kubeflow"]["kfp_sdk"] == "2.0.1"
    function = case.entry["function"]
    for key, value in case.entry["inputs"].items():
        assert run.config[key] == value
    for key, value in case.entry["outputs"].items():
        assert run.summary[function + "." + key] == value


def test_kfp20_failure_recorded_and_traceback_unchanged(kfp20_python, shim_dir, tmp_path):
    def rewrite(argv: list[str]) -> list[str]:
        return executor_parameter_rewrite("divisor", 0)(_as_kfp20(argv))

    case = ComponentCase("v2-divide", kfp20_python, shim_dir, tmp_path, index_entry("v2-divide"), rewrite)
    case.compared_failure()
