"""Lighter pods: the image names the CPython minor, the init container copies that minor only, the emptyDir
shrinks to fit; any other image gets every minor. Also the v2 component spec and the run-link switch."""

from __future__ import annotations

import copy
import json

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures import pods as fixture_pods
from webhook.admission import config as cfg
from webhook.admission import pythonimage
from webhook.admission.envvars import V2_COMPONENT_SPEC_ENV_LIMIT
from webhook.admission.podfacts import main_argv
from webhook.admission.review import evaluate
from webhook.shim import contract

ENABLED = cfg.NamespaceInfo(labels={cfg.INJECT_LABEL: cfg.NAMESPACE_INJECT_VALUE})
DIGEST = "@sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("image", "minor"),
    [
        ("python:3.7", "3.7"),
        ("python:3.11-slim", "3.11"),
        ("python:3.1", "3.1"),
        ("python:3.11.7-bookworm", "3.11"),
        ("python:3.12" + DIGEST, "3.12"),
        ("docker.io/library/python:3.9-slim-bullseye", "3.9"),
        ("library/python:3.10", "3.10"),
        ("docker.io/python:3.13", "3.13"),
        ("python:3.8-alpine" + DIGEST, "3.8"),
        ("python", None),
        ("python:3", None),
        ("python:latest", None),
        ("python:slim", None),
        ("python" + DIGEST, None),
        ("myregistry.example/python:3.11", None),
        ("gcr.io/deeplearning-platform-release/tf2-cpu", None),
        ("pytorch/pytorch:2.1.0-cuda12.1-cudnn8-runtime", None),
        ("python:3.11x", None),
        ("pypy:3.9", None),
        ("", None),
    ],
)
def test_python_minor_of_image(image, minor):
    assert pythonimage.python_minor(image) == minor


KFP27_LINE = (
    "PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet --no-warn-script-location 'kfp==2.7.0' "
    "'--no-deps' 'typing-extensions>=3.7.4,<5; python_version<\"3.9\"' && \"$0\" \"$@\"\n"
)


@pytest.mark.parametrize(
    ("script", "installs"),
    [
        (KFP27_LINE, False),
        (KFP27_LINE.replace("kfp==2.7.0", "kfp==2.0.1"), True),  # kfp 2.0.x: with its dependencies
        (KFP27_LINE.replace("'--no-deps' ", ""), True),
        (KFP27_LINE.replace(" && ", " && python3 -m pip install --quiet 'pandas' && "), True),
        ("python3 -m pip install 'kfp>=2' --no-deps && run", True),
        ("pip install --no-deps 'unterminated && run", True),
        ("program_path=$(mktemp)\npython3 -u \"$program_path\" \"$@\"\n", False),
        ("apt-get install python3-pip; python3 -m ensurepip", False),
    ],
)
def test_installs_packages(script, installs):
    assert pythonimage.installs_packages(["sh", "-c", script]) is installs


@pytest.mark.parametrize(
    ("name", "installs"),
    [("v1-add", False), ("v1-greet", True), ("v2-add", False), ("v2-train", False)],
)
def test_installs_packages_on_compiled_pods(name, installs):
    main = next(c for c in fixture_pods.load_pod(name)["spec"]["containers"] if c["name"] == "main")
    assert pythonimage.installs_packages(main_argv(main)) is installs


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    """A payload manifest the server reads its per-minor sizes from."""
    site = tmp_path / "payload" / contract.SITE_SUBDIR
    site.mkdir(parents=True)
    minors = {
        "3.7": {"install": {"bytes": 60 * 2**20, "compat_bytes": 60 * 2**20}},
        "3.11": {"install": {"bytes": 78 * 2**20, "compat_bytes": 130 * 2**20}},
    }
    (site / "manifest.json").write_text(json.dumps({"minors": minors}))
    monkeypatch.setenv(contract.PAYLOAD_DIR_ENV, str(tmp_path / "payload"))
    return minors


def test_size_limit_from_the_manifest(manifest):
    assert pythonimage.size_limit("3.7", False, "512Mi") == "93Mi"  # (60 + 2) * 1.5
    assert pythonimage.size_limit("3.11", False, "512Mi") == "120Mi"
    assert pythonimage.size_limit("3.11", True, "512Mi") == "198Mi"
    assert pythonimage.size_limit("3.6", False, "512Mi") == f"{pythonimage.MIN_LIMIT_MIB}Mi"  # nothing vendored
    assert pythonimage.size_limit(None, False, "512Mi") == "512Mi"


def test_size_limit_without_a_manifest_is_the_full_one(tmp_path, monkeypatch):
    monkeypatch.setenv(contract.PAYLOAD_DIR_ENV, str(tmp_path / "nothing-here"))
    assert pythonimage.size_limit("3.7", False, "512Mi") == "512Mi"


def injected(pod, settings=None):
    evaluation = evaluate(copy.deepcopy(pod), "kubeflow-user", ENABLED, settings or cfg.Settings(), "uid")
    assert evaluation.injection is not None, evaluation.decision.reason
    return jsonpatch.apply_patch(pod, evaluation.injection.operations), evaluation


def shim_parts(pod):
    init = next(c for c in pod["spec"]["initContainers"] if c["name"] == contract.INIT_CONTAINER_NAME)
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == contract.VOLUME_NAME)
    main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    return init["command"], volume["emptyDir"]["sizeLimit"], {var["name"]: var for var in main["env"]}


def test_python37_pod_copies_that_minor_only(manifest):
    command, limit, _env = shim_parts(injected(fixture_pods.load_pod("v1-add"))[0])
    assert command == [*contract.INSTALL_COMMAND, contract.INSTALL_PYTHON_FLAG, "3.7"]
    assert limit == "93Mi"


def test_pod_that_installs_packages_gets_the_compat_site(manifest):
    command, _limit, _env = shim_parts(injected(fixture_pods.load_pod("v1-greet"))[0])
    assert command[-3:] == [contract.INSTALL_PYTHON_FLAG, "3.7", contract.INSTALL_COMPAT_FLAG]
    pod = fixture_pods.load_pod("v2-add")
    main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    main["args"] = [arg.replace("'kfp==2.17.3'", "'kfp==2.0.1'") for arg in main["args"]]
    command, limit, _env = shim_parts(injected(pod)[0])
    assert command[-3:] == [contract.INSTALL_PYTHON_FLAG, "3.11", contract.INSTALL_COMPAT_FLAG]
    assert limit == "198Mi"


def test_unknown_image_copies_every_minor(manifest):
    pod = fixture_pods.load_pod("v1-add")
    next(c for c in pod["spec"]["containers"] if c["name"] == "main")["image"] = "registry.example/ml/train:1.2"
    command, limit, _env = shim_parts(injected(pod)[0])
    assert command == contract.INSTALL_COMMAND
    assert limit == cfg.Settings().shim_size_limit


@settings(max_examples=60, deadline=None)
@given(
    image=st.one_of(
        st.from_regex(r"\A(docker\.io/library/|library/)?python:3\.[0-9]{1,2}(-slim|\.[0-9]+)?\Z"),
        st.text(min_size=0, max_size=40),
    )
)
def test_any_image_gives_a_valid_idempotent_patch(image):
    pod = fixture_pods.load_pod("v1-add")
    next(c for c in pod["spec"]["containers"] if c["name"] == "main")["image"] = image
    mutated, _evaluation = injected(pod)
    command, _limit, _env = shim_parts(mutated)
    minor = pythonimage.python_minor(image)
    assert command == contract.INSTALL_COMMAND + ([contract.INSTALL_PYTHON_FLAG, minor] if minor else [])
    again = evaluate(mutated, "kubeflow-user", ENABLED, cfg.Settings(), "uid-2")
    assert again.injection is None and again.decision.reason == "already injected"


def test_v2_component_spec_is_passed_by_value():
    pod = fixture_pods.load_pod("v2-add")
    flags = fixture_pods.launcher_argv(pod)
    spec = flags[flags.index("--component_spec") + 1]
    _command, _limit, env = shim_parts(injected(pod)[0])
    assert env[contract.COMPONENT_SPEC] == {"name": contract.COMPONENT_SPEC, "value": spec}
    assert json.loads(spec)["executorLabel"] == "exec-add"


def test_oversized_v2_component_spec_is_skipped_with_a_warning():
    pod = fixture_pods.load_pod("v2-add")
    main = next(c for c in pod["spec"]["containers"] if c["name"] == "main")
    position = main["command"].index("--component_spec") + 1
    spec = json.loads(main["command"][position])
    spec["padding"] = "x" * V2_COMPONENT_SPEC_ENV_LIMIT
    main["command"][position] = json.dumps(spec)
    mutated, evaluation = injected(pod)
    _command, _limit, env = shim_parts(mutated)
    assert contract.COMPONENT_SPEC not in env
    assert any("component spec is over" in warning for warning in evaluation.warnings)


def test_run_link_on_by_default_off_by_setting_or_annotation():
    _c, _l, env = shim_parts(injected(fixture_pods.load_pod("v2-add"))[0])
    assert contract.RUN_LINK not in env
    _c, _l, env = shim_parts(injected(fixture_pods.load_pod("v2-add"), cfg.Settings(run_link_in_logs=False))[0])
    assert env[contract.RUN_LINK]["value"] == "off"
    pod = fixture_pods.load_pod("v1-add")
    pod["metadata"]["annotations"]["wandb.ai/run-link"] = "disabled"
    _c, _l, env = shim_parts(injected(pod)[0])
    assert env[contract.RUN_LINK]["value"] == "off"
    pod["metadata"]["annotations"]["wandb.ai/run-link"] = "enabled"
    _c, _l, env = shim_parts(injected(pod, cfg.Settings(run_link_in_logs=False))[0])
    assert contract.RUN_LINK not in env
