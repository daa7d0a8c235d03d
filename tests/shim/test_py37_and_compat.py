"""What KFP users run with the SDK defaults, recorded with the vendored wandb and read back.

* CPython 3.7 (KFP v1's `python:3.7`, KFP v2 2.0-2.7's default): a KFP v1 program compiled by kfp 1.8.22 (the
  fixtures) on a bare 3.7, and a KFP v2 component compiled by kfp 2.7.0 on a 3.7 that holds kfp 2.7.0 as the
  component's own pip step installs it (`'kfp==2.7.0' '--no-deps'`): both record with the vendored wandb 0.18.7.
* kfp 2.0.1 (installs protobuf 3.20 and imports it before the component): the vendored wandb for 3.10
  (0.31, protobuf >= 5) cannot work next to it, so the shim records with the compat wandb 0.18.7; so on
  3.9 (0.26.1 needs protobuf > 4.21.0), and on 3.10 with kfp 2.7.0 installed with its dependencies
  (protobuf 4). On 3.7 the vendored 0.18.7 takes kfp 2.0.1's protobuf itself.
Every run is read back from its .wandb file: config, summary, artifacts (the component file among them),
exit code; the component's outcome is byte-identical to a run without the shim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.pods import index_entry
from tests.shim import kfp_compile
from tests.shim.conftest import ComponentCase, ComponentRun, v1_argument_rewrite
from tests.shim.support import install_shim, payload_dir
from tests.shim.wandb_reader import read_only_run
from tests.support.venvs import ensure_venv
from webhook.shim import contract
from webhook.shim.runextras import COMPONENT_FILE_TYPE
from webhook.shim_build.install import install

KFP27_RUNTIME = ["kfp==2.7.0", "--no-deps", "typing-extensions>=3.7.4,<5"]  # what the component's pip step runs


def _venv(name: str, minor: str, requirements: list[str]) -> Path:
    try:
        return ensure_venv(name, minor, requirements)
    except LookupError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def shim_with_payload(tmp_path_factory):
    return install_shim(tmp_path_factory.mktemp("installed-payload") / "wandb-shim", with_payload=True)


@dataclass
class CompiledCase(ComponentCase):
    """A KFP v2 component compiled by an older SDK, run through its real command (pip step, executor)."""

    compiled: Any = None
    parameters: dict[str, Any] | None = None
    outputs: tuple[str, ...] = ("Output",)

    def argv(self) -> list[str]:
        resolved = kfp_compile.executor_input(self.work, dict(self.parameters or {}), list(self.outputs))
        return kfp_compile.executor_argv(self.compiled, resolved)

    def recorded_run(self, recorded: ComponentRun, minor: str, wandb: str, kfp: str, expected: dict[str, Any]):
        """The offline run of a call that succeeded: on this Python minor with this wandb and kfp, the
        parameters in its config, `expected` outputs in its summary, the component file, one `wandb sync` line."""
        run = read_only_run(recorded.wandb_dir)
        assert run.python_version.startswith(minor + ".")
        assert run.wandb_version == wandb
        assert run.exit_code == 0
        assert run.config["kubeflow"]["kfp_sdk"] == kfp
        for key, value in (self.parameters or {}).items():
            assert run.config[key] == value
        for key, value in expected.items():
            assert run.summary[self.name + "." + key] == value
        assert_component_file(run, self.name, self.compiled.component_spec)
        assert len(recorded.shim_lines) == 1 and "wandb sync" in recorded.shim_lines[0]
        return run

    def pod_env(self) -> dict[str, str]:
        """What the webhook gives an executor pod: identity, and the launcher's component spec by value."""
        return {
            contract.KFP_RUN_ID: "3f1c3a2e-0000-4000-8000-00000000c0de",
            contract.POD_NAME: "pipeline-" + self.compiled.name + "-executor",
            contract.POD_NAMESPACE: "kubeflow-user",
            contract.PIPELINE_NAME: "compat-" + self.compiled.name,
            contract.COMPONENT_SPEC: json.dumps(self.compiled.component_spec),
        }


def assert_component_file(run, component: str, spec: dict[str, Any] | str | None = None) -> None:
    """The run holds the component file: a kubeflow_component_file artifact named after the component,
    and (offline) the same file among the run's files, holding the spec (a dict, or the JSON text)."""
    if isinstance(spec, str):
        spec = json.loads(spec)
    artifact = run.artifact(component)
    assert artifact["type"] == COMPONENT_FILE_TYPE
    assert [entry["path"] for entry in artifact["entries"]] == [component + ".yaml"]
    assert artifact["entries"][0]["size"] > 0
    assert component + ".yaml" in run.files
    if spec is not None:
        saved = Path(run.path).parent / "files" / (component + ".yaml")
        import yaml

        assert yaml.safe_load(saved.read_text()) == spec


# --- CPython 3.7 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["v1-count-lines", "v1-divide"])
def test_v1_component_on_python37_recorded_with_vendored_wandb(shim_with_payload, tmp_path, name):
    python = _venv("s2-bare", "3.7", [])
    case = ComponentCase(name, python, shim_with_payload, tmp_path / name, index_entry(name))
    _baseline, recorded = case.compared()
    run = read_only_run(recorded.wandb_dir)
    assert run.python_version.startswith("3.7.")
    assert run.wandb_version == "0.18.7"
    assert run.exit_code == 0
    function = case.entry["function"]
    for key, value in case.entry["inputs"].items():
        if not key.endswith(("_path", "_file")):
            assert run.config[key] == value
    for output, value in case.entry["outputs"].items():
        assert run.summary[function + "." + output] == value
    spec = json.loads(case.pod_env()[contract.COMPONENT_SPEC])
    assert_component_file(run, function, spec)
    if name == "v1-count-lines":
        artifact = run.artifact("count-lines-summary")  # named after its Argo artifact (lineage)
        assert [entry["size"] for entry in artifact["entries"]] == [len(recorded.files["outputs/summary/data"])]
    assert len(recorded.shim_lines) == 1 and "wandb sync" in recorded.shim_lines[0]


def test_v1_failing_component_on_python37(shim_with_payload, tmp_path):
    python = _venv("s2-bare", "3.7", [])
    rewrite = v1_argument_rewrite("--divisor", "0")
    case = ComponentCase("v1-divide", python, shim_with_payload, tmp_path, index_entry("v1-divide"), rewrite)
    case.compared_failure()


@pytest.fixture(scope="module")
def kfp27_components():
    """add and divide compiled by kfp 2.7.0 (its default base image is python:3.7)."""
    compiler = _venv("kfp27-compile", "3.10", ["kfp==2.7.0"])
    return {name: kfp_compile.compiled(compiler, name) for name in ("add", "divide")}


def test_kfp27_default_image_is_python37(kfp27_components):
    for component in kfp27_components.values():
        assert component.kfp_version == "2.7.0"
        assert component.image == "python:3.7"
        assert any("'kfp==2.7.0' '--no-deps'" in arg for arg in component.argv)


@pytest.mark.parametrize(
    ("name", "parameters", "outputs", "expected"),
    [
        ("add", {"a": 1.5, "b": 2.25}, ("Output",), {"Output": 3.75}),
        ("divide", {"dividend": 17, "divisor": 5}, ("quotient", "remainder"), {"quotient": 3, "remainder": 2}),
    ],
)
def test_kfp27_component_on_python37_recorded_with_vendored_wandb(
    shim_with_payload, kfp27_components, tmp_path, name, parameters, outputs, expected
):
    python = _venv("s2-kfp27-runtime", "3.7", KFP27_RUNTIME)
    compiled = kfp27_components[name]
    case = CompiledCase(name, python, shim_with_payload, tmp_path, compiled=compiled, parameters=parameters)
    case.outputs = outputs
    _baseline, recorded = case.compared()
    metadata = json.loads(recorded.files["kfp_outputs/output_metadata.json"])
    assert metadata["parameterValues"] == expected
    case.recorded_run(recorded, "3.7", wandb="0.18.7", kfp="2.7.0", expected=expected)


def test_kfp27_failing_component_on_python37(shim_with_payload, kfp27_components, tmp_path):
    python = _venv("s2-kfp27-runtime", "3.7", KFP27_RUNTIME)
    compiled = kfp27_components["divide"]
    parameters = {"dividend": 17, "divisor": 0}
    case = CompiledCase("divide", python, shim_with_payload, tmp_path, compiled=compiled, parameters=parameters)
    case.outputs = ("quotient", "remainder")
    case.compared_failure()


# --- kfp 2.0.1: protobuf 3.20 loaded before the component ------------------------------------------
@pytest.fixture(scope="module")
def kfp20():
    """Python 3.10 with kfp 2.0.1 and its dependencies (protobuf 3.20), no wandb; add/divide compiled by it."""
    python = _venv("s2-kfp20", "3.10", ["kfp==2.0.1"])
    return python, {name: kfp_compile.compiled(python, name) for name in ("add", "divide")}


def test_kfp20_image_has_protobuf3_and_no_wandb(kfp20):
    python, components = kfp20
    assert components["add"].kfp_version == "2.0.1"
    assert any("kfp.components.executor_main" in arg for arg in components["add"].argv)
    import subprocess

    probe = (
        "import google.protobuf, importlib.util; print(google.protobuf.__version__, importlib.util.find_spec('wandb'))"
    )
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    version, wandb_spec = done.stdout.split()
    assert version.startswith("3.") and wandb_spec == "None"


@pytest.mark.parametrize(
    ("name", "parameters", "outputs", "expected"),
    [
        ("add", {"a": 1.5, "b": 2.25}, ("Output",), {"Output": 3.75}),
        ("divide", {"dividend": 17, "divisor": 5}, ("quotient", "remainder"), {"quotient": 3, "remainder": 2}),
    ],
)
def test_kfp20_component_recorded_with_compat_wandb(
    shim_with_payload, kfp20, tmp_path, name, parameters, outputs, expected
):
    python, components = kfp20
    case = CompiledCase(name, python, shim_with_payload, tmp_path, compiled=components[name], parameters=parameters)
    case.outputs = outputs
    _baseline, recorded = case.compared()
    # the compat wandb: the vendored 0.31.0 needs protobuf >= 5
    case.recorded_run(recorded, "3.10", wandb="0.18.7", kfp="2.0.1", expected=expected)


def test_kfp20_failure_recorded_with_compat_wandb(shim_with_payload, kfp20, tmp_path):
    python, components = kfp20
    parameters = {"dividend": 17, "divisor": 0}
    case = CompiledCase(
        "divide", python, shim_with_payload, tmp_path, compiled=components["divide"], parameters=parameters
    )
    case.outputs = ("quotient", "remainder")
    _recorded, run = case.compared_failure()
    assert run.wandb_version == "0.18.7"


def test_kfp20_without_the_compat_site_says_so_once_and_records_nothing(kfp20, tmp_path):
    """A pod whose copy was narrowed without --compat: the clash is one line, the outcome unchanged."""
    python, components = kfp20
    shim = tmp_path / "wandb-shim"
    result = install(shim, payload_dir(), python="3.10", compat=False)
    assert sorted(p.name for p in (shim / contract.SITE_SUBDIR).iterdir()) == ["manifest.json", "py3.10"]
    assert result["wandb"] == {"3.10": "0.31.0"}
    case = CompiledCase("add", python, shim, tmp_path / "case", compiled=components["add"], parameters={"a": 1, "b": 2})
    baseline = case.run(shim=False)
    recorded = case.run(shim=True)
    assert recorded.outcome() == baseline.outcome()
    assert list(recorded.wandb_dir.iterdir()) == []
    assert recorded.shim_lines == [
        "wandb-kfp-shim: the image's protobuf 3.20.3 is older than the vendored wandb for Python 3.10 accepts; "
        "W&B tracking is off"
    ]


def test_kfp20_on_python37_records_with_the_vendored_wandb(shim_with_payload, kfp20, tmp_path):
    """kfp 2.0.1's default image is python:3.7: there the vendored wandb 0.18.7 itself takes protobuf 3.20."""
    _python310, components = kfp20
    python = _venv("s2-kfp20", "3.7", ["kfp==2.0.1"])
    parameters = {"a": 1.5, "b": 2.25}
    case = CompiledCase("add", python, shim_with_payload, tmp_path, compiled=components["add"], parameters=parameters)
    _baseline, recorded = case.compared()
    case.recorded_run(recorded, "3.7", wandb="0.18.7", kfp="2.0.1", expected={"Output": 3.75})


@pytest.mark.parametrize(
    ("venv", "minor", "requirements", "protobuf_major", "compiled_by", "wandb_version"),
    [
        ("s2-kfp20", "3.8", ["kfp==2.0.1"], "3", "kfp20", "0.24.2"),  # 0.24.2 takes protobuf >= 3.12 itself
        ("s2-kfp20", "3.9", ["kfp==2.0.1"], "3", "kfp20", "0.18.7"),  # 0.26.1 needs protobuf > 4.21.0: compat
        ("kfp27-compile", "3.10", ["kfp==2.7.0"], "4", "kfp27_components", "0.18.7"),  # protobuf 4: compat
    ],
)
def test_other_old_protobuf_images_record(
    shim_with_payload, request, tmp_path, venv, minor, requirements, protobuf_major, compiled_by, wandb_version
):
    fixture = request.getfixturevalue(compiled_by)
    components = fixture[1] if isinstance(fixture, tuple) else fixture
    python = _venv(venv, minor, requirements)
    probe = "import google.protobuf as p; print(p.__version__)"
    import subprocess

    version = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert version.split(".")[0] == protobuf_major
    parameters = {"a": 1.5, "b": 2.25}
    case = CompiledCase("add", python, shim_with_payload, tmp_path, compiled=components["add"], parameters=parameters)
    _baseline, recorded = case.compared()
    run = read_only_run(recorded.wandb_dir)
    assert run.python_version.startswith(minor + ".") and run.wandb_version == wandb_version
    assert run.summary["add.Output"] == 3.75 and run.exit_code == 0
    assert_component_file(run, "add", components["add"].component_spec)
    assert len(recorded.shim_lines) == 1 and "wandb sync" in recorded.shim_lines[0]


def test_wandb_dir_that_does_not_exist_yet_is_used_with_wandb_0_18(shim_with_payload, tmp_path):
    """wandb 0.18 falls back to the temp dir when WANDB_DIR does not exist; the shim creates it first."""
    python = _venv("s2-bare", "3.7", [])
    case = ComponentCase("v1-add", python, shim_with_payload, tmp_path / "case", index_entry("v1-add"))
    wandb_dir = tmp_path / "not" / "yet" / "there"
    recorded = case.run(shim=True, extra_env={contract.WANDB_DIR: str(wandb_dir)})
    assert recorded.returncode == 0, recorded.stderr
    run = read_only_run(wandb_dir)
    assert run.wandb_version == "0.18.7" and run.summary["add.Output"] == 3.75
