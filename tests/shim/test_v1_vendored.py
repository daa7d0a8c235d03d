"""KFP v1 components on bare interpreters (no wandb in the image): the shim records with the wandb
vendored for that CPython minor (3.7: 0.18.7, 3.8: 0.24.x, 3.9: 0.26.x, 3.10-3.13: 0.31.0), outcome unchanged.

The generated v1 program needs nothing but Python, so an empty venv per minor is the image here.
"""

from __future__ import annotations

import pytest

from tests.fixtures.pods import index_entry
from tests.shim.conftest import ComponentCase
from tests.shim.support import install_shim
from tests.shim.wandb_reader import read_only_run
from tests.support.venvs import ensure_venv

#: Minor -> the wandb release line the payload vendors for it.
VENDORED_WANDB = {"3.7": "0.18.7", "3.8": "0.24.", "3.9": "0.26.", "3.10": "0.31.", "3.12": "0.31.", "3.13": "0.31."}
FIXTURES = ["v1-divide", "v1-count-lines"]


@pytest.fixture(scope="session")
def shim_with_payload(tmp_path_factory):
    """The shim installed with the vendored wandb payload (built once into the test cache)."""
    return install_shim(tmp_path_factory.mktemp("installed-payload") / "wandb-shim", with_payload=True)


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("minor", sorted(VENDORED_WANDB))
def test_v1_component_recorded_with_vendored_wandb(shim_with_payload, tmp_path, minor, name):
    try:
        python = ensure_venv("s2-bare", minor, [])
    except LookupError as error:
        pytest.skip(str(error))
    case = ComponentCase(name, python, shim_with_payload, tmp_path / name, index_entry(name))
    _baseline, recorded = case.compared()
    run = read_only_run(recorded.wandb_dir)
    assert run.python_version.startswith(minor + ".")
    assert run.wandb_version.startswith(VENDORED_WANDB[minor])
    assert run.exit_code == 0
    function = case.entry["function"]
    for output, value in case.entry["outputs"].items():
        assert run.summary[function + "." + output] == value
    component_file = run.artifact(function)  # the component spec, as W&B's log_component_file saved it
    assert component_file["type"] == "kubeflow_component_file" and function + ".yaml" in run.files
    assert len(recorded.shim_lines) == 1 and "wandb sync" in recorded.shim_lines[0]
