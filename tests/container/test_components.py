"""Real component images run real KFP programs in containers, with and without what the webhook injects.

For each CPython minor the shim is tested on, a KFP v1 program (v1-count-lines: an input file, an output
file, a return value) and a KFP v2 executor (v2-train: an input Dataset, an output Model, a returned str,
kfp's own pip step satisfied offline) run twice in the component image: as KFP made the pod, and as
`wandb-kfp-webhook preview` admitted it, the injected init container (the webhook image) copying the shim
into the pod's emptyDir first. The user's outcome must be identical; the W&B run (offline: there is no API
key Secret) is read back from the container's /tmp/wandb-kfp.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.container.components import ComponentPod, PodRun
from tests.container.conftest import KUBEFLOW_URL
from tests.container.images import COMPONENT_RECIPES, BuiltImage
from tests.shim.wandb_reader import find_run_files, read_only_run

PROGRAMS = ("v1-count-lines", "v2-train")
#: An arbitrary non-root UID:GID with no /etc/passwd entry, as a pod's securityContext may give.
NON_ROOT = (12345, 12345)


@dataclass(frozen=True)
class Expected:
    """What the shim does in one component image today."""

    recorded: bool
    #: A word the single `wandb-kfp-shim:` line holds when nothing is recorded.
    reason: str = ""


#: Every supported minor records (3.7 with the vendored wandb 0.18.7); an entry with recorded=False and
#: the word its one shim line must hold covers a minor the shim cannot record in.
EXPECTED = {
    "3.7": Expected(recorded=True),
    "3.8": Expected(recorded=True),
    "3.11": Expected(recorded=True),
    "3.13": Expected(recorded=True),
}
assert set(EXPECTED) == {minor for minor in COMPONENT_RECIPES if minor != "none"}


def _case(fixture: str, minor: str, image: BuiltImage, config: Path, base: Path, run_as=None) -> ComponentPod:  # type: ignore[no-untyped-def]
    kfp = COMPONENT_RECIPES[minor].kfp
    return ComponentPod(fixture, image.name, config, base, kfp=kfp if kfp != "2.17.3" else None, run_as=run_as)


def _compared(case: ComponentPod) -> tuple[PodRun, PodRun]:
    baseline = case.run(inject=False)
    injected = case.run(inject=True)
    assert baseline.main.returncode == 0, baseline.main.stderr
    assert injected.outcome() == baseline.outcome()
    assert not baseline.run_dir.exists(), "nothing records without the injection"
    return baseline, injected


def _assert_recorded(case: ComponentPod, run: PodRun, minor: str) -> None:
    env = run.env()
    entry = case.entry
    function = entry["function"]
    recorded = read_only_run(run.run_dir)
    assert recorded.exit_code == 0
    assert recorded.run_id == env["WANDB_RUN_ID"]
    assert recorded.project == env["WANDB_PROJECT"]
    assert recorded.group == env["WANDB_RUN_GROUP"] == entry["run_id"]
    assert recorded.job_type == env["WANDB_JOB_TYPE"]
    assert recorded.python_version.startswith(minor + ".")
    manifest = run.sandbox.volume_dir("wandb-shim") / "site" / "manifest.json"
    vendored = __import__("json").loads(manifest.read_text())["minors"][minor]["wandb"]
    assert recorded.wandb_version == vendored, "the image has no wandb: the vendored one for its minor records"
    assert recorded.config["LINK_TO_KUBEFLOW_RUN"] == f"{KUBEFLOW_URL}/#/runs/details/{entry['run_id']}"
    assert recorded.config["kubeflow"]["pod"] == entry["pod_name"]
    assert recorded.config["kubeflow"]["namespace"] == entry["namespace"]
    for key, value in (entry.get("outputs") or {}).items():
        assert recorded.summary[f"{function}.{key}"] == value
    if case.v2:
        assert recorded.config["learning_rate"] == entry["inputs"]["learning_rate"]
        assert recorded.config["dataset"]["uri"] == entry["input_artifacts"]["dataset"]["uri"]
        assert recorded.config["kubeflow"]["kfp_sdk"] == (case.kfp or "2.17.3")
        model = entry["output_artifacts"]["model"]
        artifact = recorded.artifact(f"{function}.model")
        assert artifact["type"] == model["schema_title"]
        # A minio:// artifact is logged by reference (the object store holds it), with KFP's metadata.
        assert [item["ref"] for item in artifact["entries"]] == [model["uri"]]
        assert artifact["metadata"]["framework"] == model["metadata"]["framework"]
        written = run.files["volume:minio-scratch/" + model["local_path"].removeprefix("/minio/")]
        assert written == model["content"].encode()
    else:
        assert recorded.config["prefix"] == entry["inputs"]["prefix"]
        assert recorded.config["text"]["bytes"] == len(entry["input_files"]["text"]["content"].encode())
        written = run.files["tmp/outputs/summary/data"]
        # Named after its Argo artifact (lineage: the consuming step uses the same name).
        artifact = next(a for a in recorded.artifacts if (a.get("metadata") or {}).get("kfp_output") == "summary")
        assert artifact["name"] == "count-lines-summary"
        assert [item["size"] for item in artifact["entries"]] == [len(written)]
    # Offline (no API key Secret in the namespace): one line says where the run is and how to upload it.
    assert len(run.shim_lines) == 1, run.shim_lines
    assert f"wandb sync {RUN_DIR_PREFIX}" in run.shim_lines[0]


RUN_DIR_PREFIX = "/tmp/wandb-kfp/"


def _report(minor: str, fixture: str, run: PodRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.init is not None
    with capsys.disabled():
        print(
            f"\n[container] py{minor} {fixture}: init container {run.init.seconds:.1f} s, "
            f"main {run.main.seconds:.1f} s (injected)"
        )


@pytest.mark.parametrize("fixture", PROGRAMS)
@pytest.mark.parametrize("minor", list(EXPECTED))
def test_component_outcome_unchanged_and_run_recorded(
    minor, fixture, component_image, webhook_config, tmp_path, capsys
):  # type: ignore[no-untyped-def]
    case = _case(fixture, minor, component_image(minor), webhook_config, tmp_path)
    _baseline, injected = _compared(case)
    assert injected.sandbox.run_as_uid("main") == 0, "no securityContext and no USER in the image: root"
    _report(minor, fixture, injected, capsys)
    expected = EXPECTED[minor]
    if expected.recorded:
        _assert_recorded(case, injected, minor)
    else:
        assert find_run_files(injected.run_dir.parent) == []
        assert len(injected.shim_lines) == 1 and expected.reason in injected.shim_lines[0], injected.shim_lines


@pytest.mark.parametrize("fixture", PROGRAMS)
def test_component_as_arbitrary_non_root_user(fixture, component_image, webhook_config, tmp_path):  # type: ignore[no-untyped-def]
    """The pod's securityContext runs main as a UID with no passwd entry (as OpenShift does): the shim
    reads the volume the init container (UID 65532) wrote, and records into /tmp."""
    minor = "3.11"
    case = _case(fixture, minor, component_image(minor), webhook_config, tmp_path, run_as=NON_ROOT)
    _baseline, injected = _compared(case)
    assert injected.sandbox.run_as_uid("main") == NON_ROOT[0]
    assert f"--user {NON_ROOT[0]}:{NON_ROOT[1]}" in " ".join(injected.sandbox.run_args("main"))
    _assert_recorded(case, injected, minor)


def test_image_without_python_is_a_clean_no_op(component_image, webhook_config, tmp_path):  # type: ignore[no-untyped-def]
    """An image with no Python at all: the command fails the same way with and without the injection,
    the init container still succeeds, and the shim never runs."""
    case = ComponentPod("v1-count-lines", component_image("none").name, webhook_config, tmp_path)
    baseline = case.run(inject=False)
    injected = case.run(inject=True)
    assert baseline.main.returncode == 127, baseline.main.stderr  # sh: python3: not found
    assert injected.outcome() == baseline.outcome()
    assert injected.shim_lines == []
    assert not injected.run_dir.exists()
