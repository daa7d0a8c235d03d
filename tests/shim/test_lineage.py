"""Lineage: W&B's artifact graph mirrors the pipeline DAG.

For every edge of the compiled lineage pipelines (tests/fixtures/pipelines/v1_lineage.py with kfp
1.8.22, v2_lineage.py with kfp 2.17.3; two and three steps, a fan-in, one output consumed twice, a v2
ParallelFor with dsl.Collected), the artifact the producer logs and the one the consumer uses have the
same name and the same digest:

- built in-process with the real wandb 0.31 `Artifact` objects both sides build (no server), from the
  pods and executor_inputs of whole runs (tests/fixtures/runs.py) and the env the real webhook injects;
  v2 with the cluster's `minio://` URIs (references, digest = URI) and v1 both uploaded and over the
  upload limit;
- end to end: every step of every pipeline run for real (v1 generated programs, v2 kfp.dsl.executor_main)
  with the installed shim, offline, files passed from producer to consumer as Argo / the launcher pass
  them, runs read back from their .wandb files: the producer's logged artifact (name, digest) is what the
  consumer's config keeps under kubeflow.inputs.<input>, which also names the producer;
- under kfp.local (real executor_inputs, real local URIs, ParallelFor iterations).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import wandb
import yaml

from tests.fixtures import podbuild, runs
from tests.fixtures.generate import FIXTURES_DIR
from tests.fixtures.pods import main_command, resolved_component_command
from tests.shim.wandb_reader import find_run_files, read_only_run, read_run
from tests.support.venvs import find_python
from webhook.admission import config as cfg
from webhook.admission.review import evaluate
from webhook.shim import contract, kfp_v2, lineage
from webhook.shim.recorder import KFP_META_KEY, Recorder

V1_PIPELINES = ["v1-lineage-two", "v1-lineage-three", "v1-lineage-fan-in", "v1-lineage-twice"]
V2_PIPELINES = ["v2-lineage-two", "v2-lineage-three", "v2-lineage-fan-in", "v2-lineage-twice", "v2-lineage-loop"]
#: The expected edges, written out: what each fixture pipeline's compiled DAG must contain.
EXPECTED_EDGES = {
    "v1-lineage-two": {("make-text", "make-text-text", "count-words", "text")},
    "v1-lineage-three": {
        ("make-text", "make-text-text", "upper-text", "text"),
        ("upper-text", "upper-text-upper", "count-words", "text"),
    },
    "v1-lineage-fan-in": {
        ("make-text", "make-text-text", "merge-texts", "left"),
        ("make-text-2", "make-text-2-text", "merge-texts", "right"),
    },
    "v1-lineage-twice": {
        ("make-text", "make-text-text", "compare-texts", "first"),
        ("make-text", "make-text-text", "compare-texts", "second"),
    },
    "v2-lineage-two": {("make-text", "make-text.text", "count-words", "text")},
    "v2-lineage-three": {
        ("make-text", "make-text.text", "upper-text", "text"),
        ("upper-text", "upper-text.upper", "count-words", "text"),
    },
    "v2-lineage-fan-in": {
        ("make-text", "make-text.text", "merge-texts", "left"),
        ("make-text-2", "make-text-2.text", "merge-texts", "right"),
    },
    "v2-lineage-twice": {
        ("make-text", "make-text.text", "compare-texts", "first"),
        ("make-text", "make-text.text", "compare-texts", "second"),
    },
    "v2-lineage-loop": {
        ("make-text", "make-text.text", "count-words", "text"),
        ("make-text", "make-text.text", "merge-all", "texts"),
    },
}
NAMESPACE = podbuild.NAMESPACE
ENABLED = cfg.NamespaceInfo(labels={cfg.INJECT_LABEL: cfg.NAMESPACE_INJECT_VALUE})
#: Variables the webhook sets that a local run cannot use as they are (secret, cluster URL, mount path).
NOT_LOCAL = {contract.WANDB_API_KEY, contract.WANDB_BASE_URL, "PYTHONPATH"}
LARGE = 10**9


def compiled_v1(pipeline: str) -> dict[str, Any]:
    return yaml.safe_load((FIXTURES_DIR / "compiled" / "v1" / (pipeline + ".yaml")).read_text())


def compiled_v2(pipeline: str) -> dict[str, Any]:
    return yaml.safe_load((FIXTURES_DIR / "compiled" / "v2" / (pipeline + ".yaml")).read_text())


def input_name(path: str) -> str:
    """`/tmp/inputs/<name>/data` -> `<name>` (KFP v1's InputPath layout)."""
    return path.rstrip("/").split("/")[-2]


def webhook_env(pod: dict[str, Any]) -> dict[str, str]:
    """What the real webhook puts into the pod's main container, as a local process can have it:
    literal values, the downward-API identity filled in from the pod, without secret, URL or PYTHONPATH."""
    evaluation = evaluate(copy.deepcopy(pod), NAMESPACE, ENABLED, cfg.Settings(), "uid")
    assert evaluation.injection is not None, evaluation.decision.reason
    mutated = jsonpatch.apply_patch(pod, evaluation.injection.operations)
    main = next(c for c in mutated["spec"]["containers"] if c["name"] == "main")
    env = {
        var["name"]: var["value"]
        for var in main["env"]
        if var["name"].startswith("WANDB_") and "value" in var and var["name"] not in NOT_LOCAL
    }
    env[contract.POD_NAME] = pod["metadata"]["name"]
    env[contract.POD_NAMESPACE] = pod["metadata"]["namespace"]
    return env


def bare_recorder(kind: str, component: str) -> Recorder:
    """The shim's recorder with the real wandb module and no run: it builds artifacts, logs nothing."""
    recorder = Recorder(kind, component)
    recorder.wandb = wandb
    return recorder


def rewrite(text: str, replacements: list[tuple[str, str]]) -> str:
    for old, new in replacements:
        text = text.replace(old, new)
    return text


def spec_types(pod: dict[str, Any]) -> dict[str, str]:
    """Input and output types from a v1 pod's component spec annotation, by name."""
    spec = json.loads(pod["metadata"]["annotations"]["pipelines.kubeflow.org/component_spec"])
    return {item["name"]: item.get("type") for item in spec.get("inputs", []) + spec.get("outputs", [])}


# --- naming rule -----------------------------------------------------------------------------------
RUN = "5a3c0e4e-7d52-4d7c-9a0b-1f3f3c0c2d11"
SALT = "0f1e2d3c-4b5a-4968-8776-655443322110"


@pytest.mark.parametrize(
    ("uri", "source"),
    [
        (f"minio://mlpipeline/v2/artifacts/p/{RUN}/train/{SALT}/model", ("train", "model")),
        (f"gs://bucket/root/namespace/ns/pipeline/p/{RUN}/train/{SALT}/model", ("train", "model")),
        (f"s3://bucket/p/{RUN}/train/model", ("train", "model")),  # KFP < 2.4: no salt
        (f"minio://mlpipeline/v2/artifacts/p/{RUN}/train/{SALT}/model?region=x", ("train", "model")),
        (f"/work/minio/mlpipeline/v2/artifacts/p/{RUN}/train/{SALT}/model", ("train", "model")),
        ("/root/p-2026-12-01-15-02-21-667332/make-text/text", ("make-text", "text")),  # kfp.local
        ("/root/p-2026-12-01-15-02-21-667332/for-loop-2-iteration-1/make-text/text", ("make-text", "text")),
        ("gs://bucket/imported/data.csv", None),  # dsl.importer: a URI the user chose
        ("/data/train/model", None),
        (f"gs://bucket/{RUN}", None),
        ("", None),
    ],
)
def test_v2_names_come_from_the_uri_layout(uri, source):
    assert lineage.v2_source(uri) == source
    assert lineage.v2_artifact_name(uri) == (source[0] + "." + source[1] if source else None)


def test_v1_names_come_from_the_webhooks_argo_artifacts(monkeypatch):
    value = {"inputs": {"/tmp/inputs/text/data": "make-text-text"}, "outputs": {"/tmp/outputs/n/data": "count-n"}}
    monkeypatch.setenv(contract.ARGO_ARTIFACTS, json.dumps(value))
    assert lineage.v1_input_name("/tmp/inputs/text/data") == "make-text-text"
    assert lineage.v1_output_name("/tmp/outputs/n/data") == "count-n"
    assert lineage.v1_input_name("/tmp/inputs/other/data") is None
    for broken in ("", "not json", "[]", '{"inputs": []}', "x" * (contract.ARGO_ARTIFACTS_MAX_CHARS + 1)):
        monkeypatch.setenv(contract.ARGO_ARTIFACTS, broken)
        assert lineage.v1_input_name("/tmp/inputs/text/data") is None


# --- every edge, in-process, with the real wandb Artifact objects ----------------------------------
@pytest.mark.parametrize("limit", [LARGE, 0], ids=["uploaded", "over-the-limit"])
@pytest.mark.parametrize("pipeline", V1_PIPELINES)
def test_v1_every_edge_one_name_and_digest(pipeline, limit, tmp_path, monkeypatch):
    workflow = compiled_v1(pipeline)
    run = podbuild.Run(pipeline)
    steps = {step.task: step for step in runs.v1_run(run, workflow)}
    edges = runs.v1_edges(workflow)
    assert {(e.producer, e.artifact, e.consumer, input_name(e.input)) for e in edges} == EXPECTED_EDGES[pipeline]

    def side(task: str, path: str) -> tuple[Path, dict[str, str]]:
        """The local path of a pod path, and the webhook's env for that pod, rewritten alike."""
        replacements = [("/tmp/", f"{tmp_path}/{task}/")]
        env = webhook_env(steps[task].pod)
        env[contract.ARGO_ARTIFACTS] = rewrite(env[contract.ARGO_ARTIFACTS], replacements)
        return Path(rewrite(path, replacements)), env

    for edge in edges:
        content = f"what {edge.producer} wrote for {edge.artifact}\n"
        produced, producer_env = side(edge.producer, edge.output)
        consumed, consumer_env = side(edge.consumer, edge.input)
        for path in (produced, consumed):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        for name, value in producer_env.items():
            monkeypatch.setenv(name, value)
        output_type = spec_types(steps[edge.producer].pod)[input_name(edge.output)]
        logged = lineage.v1_output_artifact(
            bare_recorder(contract.KIND_V1_COMPONENT, "producer"),
            input_name(edge.output),
            output_type,
            str(produced),
            limit,
        )
        for name, value in consumer_env.items():
            monkeypatch.setenv(name, value)
        input_type = spec_types(steps[edge.consumer].pod)[input_name(edge.input)]
        used, entry = lineage.v1_input_artifact(
            bare_recorder(contract.KIND_V1_COMPONENT, "consumer"),
            input_name(edge.input),
            input_type,
            str(consumed),
            limit,
        )
        assert logged.name == used.name == entry["artifact"] == edge.artifact
        assert logged.type == used.type == entry["type"] == "Text"
        assert logged.digest == used.digest == entry["digest"]
        assert entry["argo_artifact"] == edge.artifact
        if limit == LARGE:  # uploaded: the digest follows the bytes, whatever the paths
            assert [e.path for e in logged.manifest.entries.values()] == ["data"]
            consumed.write_text(content + "changed\n")
            changed, _ = lineage.v1_input_artifact(
                bare_recorder(contract.KIND_V1_COMPONENT, "consumer"),
                input_name(edge.input),
                input_type,
                str(consumed),
                limit,
            )
            assert changed.digest != logged.digest
        else:  # referenced: the digest names the Argo artifact of this workflow
            (reference,) = logged.manifest.entries.values()
            assert reference.digest == "argo://" + run.workflow_name + "/" + edge.artifact


def v2_producers(
    steps: list[runs.V2Step], path_of, remote: bool, limit: int
) -> dict[str, tuple[runs.V2Step, str, Any]]:
    """URI -> (step, output name, artifact the producer logs), for every output of every execution."""
    produced = {}
    for step in steps:
        recorder = bare_recorder(contract.KIND_V2_EXECUTOR, step.component.removeprefix("comp-").replace("-", "_"))
        for output, holder in step.executor_input["outputs"].get("artifacts", {}).items():
            for runtime in holder["artifacts"]:
                reference = kfp_v2.artifact_reference(runtime)
                uri = reference["uri"]
                artifact = lineage.v2_output_artifact(
                    recorder, output, reference["schemaTitle"], {"uri": uri}, uri, path_of(uri), remote, limit
                )
                produced[uri] = (step, output, artifact)
    return produced


@pytest.mark.parametrize("pipeline", V2_PIPELINES)
def test_v2_every_edge_one_name_and_digest_on_the_cluster(pipeline):
    """minio:// URIs as the KFP driver writes them: both sides reference the URI, nothing is read."""
    ir = compiled_v2(pipeline)
    steps = runs.v2_run(podbuild.Run(pipeline), ir)
    produced = v2_producers(steps, kfp_v2.local_path, remote=True, limit=LARGE)
    assert all(uri.startswith("minio://") for uri in produced)
    seen = set()
    for step in steps:
        recorder = bare_recorder(contract.KIND_V2_EXECUTOR, "consumer")
        for input_name_, holder in step.executor_input["inputs"].get("artifacts", {}).items():
            for runtime in holder["artifacts"]:
                reference = kfp_v2.artifact_reference(runtime)
                used, entry = lineage.v2_input_artifact(
                    recorder, input_name_, reference, kfp_v2.local_path(reference["uri"]), True, LARGE
                )
                producer, output, logged = produced[reference["uri"]]
                assert used.name == logged.name == entry["artifact"] == producer.task + "." + output
                assert used.type == logged.type == "system.Dataset"
                assert used.digest == logged.digest == entry["digest"]
                (only,) = used.manifest.entries.values()
                assert only.digest == only.ref == reference["uri"]
                assert (entry["producer"], entry["output"], entry["uri"]) == (producer.task, output, reference["uri"])
                seen.add((producer.task, used.name, step.task, input_name_))
    assert seen == EXPECTED_EDGES[pipeline]
    assert {(e.producer, e.producer + "." + e.output, e.consumer, e.input) for e in runs.v2_edges(ir)} == seen
    if pipeline == "v2-lineage-loop":  # three iterations: three versions of one name, all used by merge-all
        makers = [artifact for step, _, artifact in produced.values() if step.task == "make-text"]
        assert len({a.name for a in makers}) == 1 and len({a.digest for a in makers}) == 3
        (merge,) = [s for s in steps if s.task == "merge-all"]
        assert len(merge.executor_input["inputs"]["artifacts"]["texts"]["artifacts"]) == 3


def test_v2_input_from_elsewhere_keeps_its_input_name():
    """An artifact no KFP task produced (dsl.importer, a hand-written executor_input): today's names."""
    recorder = bare_recorder(contract.KIND_V2_EXECUTOR, "train")
    reference = {"name": "1", "schemaTitle": "system.Dataset", "uri": "gs://bucket/imported/data.csv", "metadata": {}}
    used, entry = lineage.v2_input_artifact(
        recorder, "dataset", reference, "/gcs/bucket/imported/data.csv", True, LARGE
    )
    assert used.name == entry["artifact"] == "dataset"
    assert "producer" not in entry
    logged = lineage.v2_output_artifact(
        recorder, "model", "system.Model", {}, "gs://bucket/m", "/gcs/bucket/m", True, 1
    )
    assert logged.name == "train.model"


# --- end to end: real components, real shim, offline runs read back --------------------------------
def clean_env(python: Path, home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WANDB_", "PYTHON", "_KFP", "KFP_")) and key != "NETRC"
    }
    env["PATH"] = str(python.parent) + os.pathsep + env.get("PATH", "")
    env["HOME"] = str(home)
    env["PIP_NO_INDEX"] = "1"  # a v2 component's pip step must be satisfied from the venv, offline
    return env


def run_step(python: Path, argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    shim_lines = [line for line in completed.stderr.splitlines() if line.startswith("wandb-kfp-shim:")]
    assert len(shim_lines) == 1 and "wandb sync" in shim_lines[0], shim_lines
    return completed


@pytest.mark.parametrize("pipeline", V1_PIPELINES)
def test_v1_pipeline_run_links_every_edge(pipeline, v1_python, shim_dir, tmp_path):
    workflow = compiled_v1(pipeline)
    steps = runs.v1_run(podbuild.Run(pipeline), workflow)
    edges = runs.v1_edges(workflow)
    for step in steps:
        work = tmp_path / step.task
        replacements = [("/tmp/inputs", str(work / "inputs")), ("/tmp/outputs", str(work / "outputs"))]
        for edge in edges:  # Argo hands the producer's output file to the consumer's input path
            if edge.consumer == step.task:
                target = Path(rewrite(edge.input, replacements))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(rewrite(edge.output, [("/tmp", str(tmp_path / edge.producer))]), target)
        env = clean_env(v1_python, tmp_path / "home")
        env.update(webhook_env(step.pod))
        env[contract.ARGO_ARTIFACTS] = rewrite(env[contract.ARGO_ARTIFACTS], replacements)
        env.update(
            {
                contract.WANDB_DIR: str(tmp_path / ("wandb-" + step.task)),
                contract.WANDB_MODE: "offline",
                "PYTHONPATH": contract.bootstrap_dir(str(shim_dir)),
            }
        )
        (tmp_path / ("wandb-" + step.task)).mkdir()
        run_step(v1_python, [rewrite(arg, replacements) for arg in main_command(step.pod)], env, work)

    for edge in edges:
        producer = read_only_run(tmp_path / ("wandb-" + edge.producer))
        consumer = read_only_run(tmp_path / ("wandb-" + edge.consumer))
        logged = producer.artifact(edge.artifact)
        entry = consumer.config[KFP_META_KEY][lineage.INPUTS_KEY][input_name(edge.input)]
        assert (entry["artifact"], entry["type"], entry["digest"]) == (logged["name"], logged["type"], logged["digest"])
        assert entry["argo_artifact"] == edge.artifact and edge.artifact.startswith(edge.producer + "-")
        assert logged["metadata"]["argo_artifact"] == edge.artifact
        assert consumer.used_artifacts == []  # offline: the config entry is the record
        assert consumer.config[input_name(edge.input)]["artifact"] == "referenced"


def v2_step_runs(pipeline: str, python: Path, shim_dir: Path, tmp_path: Path) -> list[tuple[runs.V2Step, Any]]:
    """Every execution of a v2 lineage run, for real, offline; artifacts live under one shared root."""
    steps = runs.v2_run(podbuild.Run(pipeline), compiled_v2(pipeline))
    store = tmp_path / "store"
    recorded = []
    for step in steps:
        work = tmp_path / str(step.execution_id)
        replacements = [
            ("minio://", str(store) + "/minio/"),
            ("/tmp/kfp_outputs", str(work / "kfp_outputs")),
            ("/tmp/kfp/outputs", str(work / "kfp" / "outputs")),
        ]
        env = clean_env(python, tmp_path / "home")
        env.update(webhook_env(step.pod))
        wandb_dir = tmp_path / ("wandb-" + str(step.execution_id))
        wandb_dir.mkdir()
        env.update(
            {
                contract.WANDB_DIR: str(wandb_dir),
                contract.WANDB_MODE: "offline",
                "PYTHONPATH": contract.bootstrap_dir(str(shim_dir)),
            }
        )
        argv = [rewrite(arg, replacements) for arg in resolved_component_command(step.pod)]
        run_step(python, argv, env, work)
        recorded.append((step, read_only_run(wandb_dir)))
    return recorded


@pytest.mark.parametrize("pipeline", V2_PIPELINES)
def test_v2_pipeline_run_links_every_edge(pipeline, kfp2_python, shim_dir, tmp_path):
    recorded = v2_step_runs(pipeline, kfp2_python, shim_dir, tmp_path)
    logged = {}  # uri -> (task, output, logged artifact)
    for step, run in recorded:
        for artifact in run.artifacts:
            if "uri" in artifact["metadata"]:
                output = artifact["metadata"]["uri"].rsplit("/", 1)[-1]
                logged[artifact["metadata"]["uri"]] = (step.task, output, artifact)
    seen = set()
    for step, run in recorded:
        for name, entries in run.config[KFP_META_KEY].get(lineage.INPUTS_KEY, {}).items():
            for entry in entries if isinstance(entries, list) else [entries]:
                task, output, artifact = logged[entry["uri"]]
                assert (entry["artifact"], entry["type"], entry["digest"]) == (
                    artifact["name"],
                    artifact["type"],
                    artifact["digest"],
                )
                assert (entry["producer"], entry["output"]) == (task, output)
                seen.add((task, entry["artifact"], step.task, name))
    assert seen == EXPECTED_EDGES[pipeline]


def test_v2_fixture_pods_link_make_dataset_to_train(component):
    """The committed v2-make-dataset and v2-train pods: train's input is make-dataset's output."""
    producer = component("v2-make-dataset")
    consumer = component("v2-train")
    made = producer.run(shim=True)
    trained = consumer.run(shim=True)
    assert made.returncode == trained.returncode == 0, trained.stderr
    logged = read_only_run(made.wandb_dir).artifact("make-dataset.dataset")
    entry = read_only_run(trained.wandb_dir).config[KFP_META_KEY][lineage.INPUTS_KEY]["dataset"]
    assert (entry["artifact"], entry["producer"], entry["output"]) == (
        "make-dataset.dataset",
        "make-dataset",
        "dataset",
    )
    assert entry["digest"] == logged["digest"]  # same bytes (the index content) under the same file name


# --- kfp.local: real executor_inputs, local URIs -------------------------------------------------
LOCAL_RUNNER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from kfp import local
    import v2_lineage

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[3])
    v2_lineage.PIPELINES[sys.argv[2]]()
    """
)


@pytest.mark.parametrize("pipeline", V2_PIPELINES)
def test_v2_kfp_local_run_links_every_edge(pipeline, kfp2_python, shim_dir, tmp_path):
    script = tmp_path / "run_local.py"
    script.write_text(LOCAL_RUNNER)
    env = clean_env(kfp2_python, tmp_path / "home")
    env.update(
        {
            contract.WANDB_DIR: str(tmp_path / "wandb"),
            contract.WANDB_MODE: "offline",
            "PYTHONPATH": contract.bootstrap_dir(str(shim_dir)),
        }
    )
    (tmp_path / "wandb").mkdir()
    completed = subprocess.run(
        [str(kfp2_python), str(script), str(FIXTURES_DIR / "pipelines"), pipeline, str(tmp_path / "root")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    recorded = [read_run(path) for path in find_run_files(tmp_path / "wandb")]
    executions = len(runs.v2_run(podbuild.Run(pipeline), compiled_v2(pipeline)))
    assert len(recorded) == executions and all(run.exit_code == 0 for run in recorded)
    logged = {
        (artifact["name"], artifact["digest"]): (run, artifact)
        for run in recorded
        for artifact in run.artifacts
        if artifact["type"] == "system.Dataset"
    }
    functions = task_functions(compiled_v2(pipeline))
    seen = set()
    for run in recorded:
        for name, entries in run.config[KFP_META_KEY].get(lineage.INPUTS_KEY, {}).items():
            (consumer_task,) = [task for task, function in functions.items() if function == run.job_type]
            for entry in entries if isinstance(entries, list) else [entries]:
                producer_run, artifact = logged[(entry["artifact"], entry["digest"])]
                assert artifact["metadata"]["uri"] == entry["uri"]
                assert producer_run.job_type == functions[entry["producer"]]
                seen.add((entry["producer"], entry["artifact"], consumer_task, name))
    assert seen == EXPECTED_EDGES[pipeline]


def task_functions(ir: dict[str, Any]) -> dict[str, str]:
    """Task name -> the Python function its executor runs, over every DAG of a pipeline IR."""
    functions = {}
    for dag in [ir["root"]["dag"], *(c["dag"] for c in ir["components"].values() if "dag" in c)]:
        for task_name, task in dag["tasks"].items():
            component = ir["components"][task["componentRef"]["name"]]
            if "executorLabel" in component:
                args = ir["deploymentSpec"]["executors"][component["executorLabel"]]["container"]["args"]
                functions[task_name] = args[args.index("--function_to_execute") + 1]
    return functions


def test_lineage_module_parses_under_python_3_7():
    python = find_python("3.7")
    if python is None:
        pytest.skip("CPython 3.7 is not installed")
    source = Path(lineage.__file__)
    check = "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])"
    completed = subprocess.run([str(python), "-c", check, str(source)], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
