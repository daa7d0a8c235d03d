"""KFP v2 components in images without wandb (kfp 2.17.3 on Python 3.9 and 3.12): the shim records
with the vendored wandb for that minor (3.9: 0.26.x, 3.12: 0.31.0), imported after kfp, outcome unchanged.
"""

from __future__ import annotations

import pytest

from tests.fixtures.pods import index_entry
from tests.shim.conftest import ComponentCase, executor_parameter_rewrite
from tests.shim.support import install_shim
from tests.shim.wandb_reader import read_only_run
from tests.support.venvs import ensure_venv

VENDORED_WANDB = {"3.9": "0.26.", "3.12": "0.31."}


@pytest.fixture(scope="session")
def shim_with_payload(tmp_path_factory):
    """The shim installed with the vendored wandb payload (built once into the test cache)."""
    return install_shim(tmp_path_factory.mktemp("installed-payload") / "wandb-shim", with_payload=True)


@pytest.mark.parametrize("name", ["v2-make-dataset", "v2-evaluate"])  # v2-train needs Python 3.10+
@pytest.mark.parametrize("minor", sorted(VENDORED_WANDB))
def test_v2_component_recorded_with_vendored_wandb(shim_with_payload, tmp_path, minor, name):
    try:
        python = ensure_venv("s2-kfp2-nowandb", minor, ["kfp==2.17.3"])
    except LookupError as error:
        pytest.skip(str(error))
    case = ComponentCase(name, python, shim_with_payload, tmp_path / name, index_entry(name))
    _baseline, recorded = case.compared()
    run = read_only_run(recorded.wandb_dir)
    assert run.python_version.startswith(minor + ".")
    assert run.wandb_version.startswith(VENDORED_WANDB[minor])
    assert run.exit_code == 0
    assert run.job_type == case.entry["function"]
    for key, value in (case.entry.get("inputs") or {}).items():
        assert run.config[key] == value
    if name == "v2-evaluate":
        assert run.summary["accuracy"] == 0.75
        assert run.config["_wandb"]["visualize"]["classification.roc"]["panel_type"] == "Vega2"
    else:
        dataset = run.artifact("make-dataset.dataset")  # <task>.<output>, from the URI
        assert dataset["type"] == "system.Dataset"
        assert dataset["metadata"]["rows"] == 4


@pytest.mark.parametrize("minor", sorted(VENDORED_WANDB))
def test_v2_failure_with_vendored_wandb_keeps_traceback(shim_with_payload, tmp_path, minor):
    python = ensure_venv("s2-kfp2-nowandb", minor, ["kfp==2.17.3"])
    rewrite = executor_parameter_rewrite("divisor", 0)
    case = ComponentCase("v2-divide", python, shim_with_payload, tmp_path, index_entry("v2-divide"), rewrite)
    case.compared_failure()
