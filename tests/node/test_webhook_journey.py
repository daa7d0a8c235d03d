"""The admin's journey on a real node: install the chart, opt a team in, run KFP v1 pipelines, read W&B back.

The chart is installed with `helm install` and the image `make image` builds (selfManaged certificates,
offline runs on a PVC, no W&B server reachable, so every run falls back to offline). A team namespace is
labelled `wandb.ai/inject=enabled` and holds its API-key Secret and the offline PVC (a hostPath PV);
another namespace is not labelled. Pipelines compiled by the real kfp 1.8.22 (tests/node/pipelines/
kfp_v1.py: a NamedTuple step on python:3.7, an InputPath/OutputPath step on python:3.11, a scalar step on
python:3.13, and a step that raises) run in both, as KFP's API server would submit them. Each Workflow
must end as it does unlabelled, with byte-identical outputs in MinIO, and every component pod of the
team must leave a W&B run on the PVC that says what it did. Then the webhook is scaled to zero
(workflows still run, unrecorded) and the chart is upgraded while pods are created (none loses its
injection: failurePolicy Ignore would hide a missed call, so every pod is counted).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.node import kfp
from tests.node import webhook as wh
from tests.node.argo import Argo
from tests.node.cluster import NodeCluster
from tests.node.webhook import TIER_SUMMARY, TeamNamespace, Webhook
from tests.shim.conftest import normalise, without_shim_lines
from tests.shim.wandb_reader import RunFile, find_run_files, read_run
from webhook.shim import contract

JOURNEY = "node-v1-journey"
FAILING = "node-v1-failing"
#: Each step: its CPython minor, its inputs as the component receives them, what the shim puts in the
#: run's summary, and the bytes of each output file Argo stores (pipeline defaults: rows 4, prefix
#: "counted", factor 1.5; value 7 over limit 5 fails).
STEPS: dict[str, dict[str, Any]] = {
    "make-lines": {
        "pipeline": JOURNEY,
        "minor": "3.7",
        "function": "make_lines",
        "inputs": {"rows": 4},
        "summary": {"make_lines.lines": 4, "make_lines.first": "line 0"},
        "outputs": {
            "make-lines-text": b"line 0\nline 1\nline 2\nline 3\n",
            "make-lines-lines": b"4",
            "make-lines-first": b"line 0",
        },
        "logged_artifacts": {"make-lines-text"},
    },
    "count-words": {
        "pipeline": JOURNEY,
        "minor": "3.11",
        "function": "count_words",
        "inputs": {"prefix": "counted"},
        "summary": {"count_words.Output": 8},
        "outputs": {"count-words-Output": b"8", "count-words-summary": b"counted: 8 words"},
        "logged_artifacts": {"count-words-summary"},
        "input_files": {"text": "make-lines-text"},
    },
    "scale": {
        "pipeline": JOURNEY,
        "minor": "3.13",
        "function": "scale",
        "inputs": {"value": 8, "factor": 1.5},
        "summary": {"scale.Output": 12.0},
        "outputs": {"scale-Output": b"12.0"},
        "logged_artifacts": set(),
    },
    "check-limit": {
        "pipeline": FAILING,
        "minor": "3.11",
        "function": "check_limit",
        "inputs": {"value": 7, "limit": 5},
        "summary": {"exception_type": "ValueError", "exception_message": "value 7 is above the limit 5"},
        "outputs": {},
        "logged_artifacts": set(),
        "exit_code": 1,
    },
}
#: The wandb each minor records with (the image has none): the vendored one of the payload.
WANDB_OF_MINOR = {"3.7": "0.18.7", "3.11": "0.31.0", "3.13": "0.31.0"}
LOGS = "main-logs"


@dataclass
class Ran:
    """One Workflow run to its end: the Workflow, its pods by step (template) name."""

    namespace: TeamNamespace
    workflow: dict[str, Any]
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.workflow["metadata"]["name"])

    @property
    def phase(self) -> str:
        return str(self.workflow["status"]["phase"])

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Pod nodes by step (template) name."""
        return {
            node["templateName"]: node for node in self.workflow["status"]["nodes"].values() if node["type"] == "Pod"
        }


@dataclass
class Journey:
    team: TeamNamespace
    plain: TeamNamespace
    compiled: dict[str, dict[str, Any]]
    runs: dict[tuple[str, str], Ran]  # (namespace kind "team"/"plain", pipeline) -> Ran


def _pods_by_step(cluster: NodeCluster, namespace: str, workflow: str) -> dict[str, dict[str, Any]]:
    selector = f"workflows.argoproj.io/workflow%3D{workflow}"
    pods = cluster.get_json(f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")["items"]
    # Argo names the node `<workflow>.<task>`; the KFP v1 DAG's tasks are named after their templates.
    return {pod["metadata"]["annotations"]["workflows.argoproj.io/node-name"].rsplit(".", 1)[1]: pod for pod in pods}


def _run_all(argo: Argo, submissions: list[tuple[TeamNamespace, dict[str, Any]]]) -> list[Ran]:
    """Submit every Workflow at once, then wait for each (the node runs them side by side)."""
    names = [(namespace, argo.submit(namespace.name, workflow)) for namespace, workflow in submissions]
    done = []
    for namespace, name in names:
        workflow = argo.wait(namespace.name, name, timeout=540)
        done.append(Ran(namespace, workflow, _pods_by_step(argo.cluster, namespace.name, name)))
    return done


@pytest.fixture(scope="module")
def journey(webhook: Webhook, argo: Argo) -> Journey:
    """Both pipelines, compiled by kfp 1.8.22, run in the team's namespace and in an unlabelled one."""
    team = webhook.team_namespace("team")
    plain = webhook.team_namespace("plain", labelled=False)
    webhook.wait_called(team.name)
    compiled = kfp.compile_v1(argo.cluster.temp_dir / "compiled")
    submissions = [
        (namespace, kfp.as_kfp_run(compiled[pipeline], run_name=f"{pipeline} in {namespace.name}"))
        for namespace in (team, plain)
        for pipeline in (JOURNEY, FAILING)
    ]
    started = time.monotonic()
    done = _run_all(argo, submissions)
    TIER_SUMMARY["journey workflows (4, side by side)"] = f"{time.monotonic() - started:.1f} s"
    runs = {
        ("team" if ran.namespace is team else "plain", str(ran.workflow["metadata"]["generateName"])[:-1]): ran
        for ran in done
    }
    return Journey(team, plain, compiled, runs)


def _artifacts(argo: Argo, node: dict[str, Any]) -> dict[str, bytes]:
    return {artifact["name"]: argo.artifact(artifact) for artifact in node.get("outputs", {}).get("artifacts", [])}


def _parameters(node: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p.get("value", "") for p in node.get("outputs", {}).get("parameters", [])}


def _shim_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("wandb-kfp-shim:")]


@pytest.mark.timeout(900)  # the first test pays for the install and the four Workflows
def test_the_chart_is_installed_and_the_apiserver_calls_it(webhook: Webhook, journey: Journey) -> None:
    deployment = webhook.deployment()
    assert deployment["status"]["readyReplicas"] == deployment["spec"]["replicas"] == 2
    pods = webhook.pods()
    assert len(pods) == 2 and all(pod["metadata"]["labels"][wh.INJECT_LABEL] == "false" for pod in pods)
    assert {c["image"] for pod in pods for c in pod["spec"]["containers"]} == {webhook.image}
    configuration = webhook.configuration()
    hooks = {hook["name"]: hook for hook in configuration["webhooks"]}
    assert set(hooks) == set(wh.WEBHOOK_NAMES)
    bundles = wh.ca_bundles(configuration)
    assert all(b"BEGIN CERTIFICATE" in bundle for bundle in bundles) and len(set(bundles)) == 1
    for hook in hooks.values():
        assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
        assert hook["clientConfig"]["service"] == {
            "namespace": wh.NAMESPACE,
            "name": wh.FULLNAME,
            "path": "/mutate",
            "port": 443,
        }
    # Called through the Service (kube-proxy's ClusterIP on this host) for the team, never for the other.
    probed = webhook.probe(journey.team.name)
    assert probed["metadata"]["annotations"][wh.INJECTED_ANNOTATION] == contract.KIND_ARGO
    env = {e["name"]: e for e in probed["spec"]["containers"][0]["env"]}
    assert env["WANDB_BASE_URL"]["value"] == wh.CLOSED_BASE_URL
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == wh.API_KEY_SECRET
    assert wh.INJECTED_ANNOTATION not in webhook.probe(journey.plain.name)["metadata"].get("annotations", {})


@pytest.mark.parametrize("pipeline", [JOURNEY, FAILING])
def test_each_workflow_ends_as_it_does_unlabelled(
    argo: Argo, webhook: Webhook, journey: Journey, pipeline: str
) -> None:
    team, plain = journey.runs[("team", pipeline)], journey.runs[("plain", pipeline)]
    assert team.phase == plain.phase == ("Succeeded" if pipeline == JOURNEY else "Failed")
    team_nodes, plain_nodes = team.nodes(), plain.nodes()
    assert set(team_nodes) == set(plain_nodes) == {s for s, v in STEPS.items() if v["pipeline"] == pipeline}
    for step, expected in STEPS.items():
        if expected["pipeline"] != pipeline:
            continue
        ours, theirs = team_nodes[step], plain_nodes[step]
        assert ours["phase"] == theirs["phase"], step
        assert ours.get("message") == theirs.get("message"), step
        assert _parameters(ours) == _parameters(theirs), step
        team_files, plain_files = _artifacts(argo, ours), _artifacts(argo, theirs)
        assert set(team_files) == set(plain_files) == {*expected["outputs"], LOGS}, step
        for name, content in expected["outputs"].items():
            assert team_files[name] == plain_files[name] == content, (step, name)
        # The step's log (archived by Argo in MinIO): the same, but for the shim's one line.
        team_log, plain_log = team_files[LOGS].decode(), plain_files[LOGS].decode()
        assert normalise(without_shim_lines(team_log)) == normalise(plain_log), step
        assert _shim_lines(plain_log) == []
        assert len(_shim_lines(team_log)) == 1 and "saved offline" in team_log, team_log
        # Injected in the team's namespace only; the shim narrowed to the minor `python:3.X` names.
        injected, untouched = team.pods[step], plain.pods[step]
        minor = expected["minor"]
        assert injected["metadata"]["annotations"][wh.INJECTED_ANNOTATION] == contract.KIND_V1_COMPONENT
        init = {c["name"]: c for c in injected["spec"]["initContainers"]}[wh.SHIM_INIT_CONTAINER]
        assert init["command"][-2:] == ["--python", minor] and init["image"] == webhook.image
        volumes = {v["name"]: v for v in injected["spec"]["volumes"]}
        assert volumes[contract.OFFLINE_VOLUME_NAME]["persistentVolumeClaim"]["claimName"] == wh.OFFLINE_PVC
        assert wh.INJECTED_ANNOTATION not in untouched["metadata"].get("annotations", {})
        assert [c["name"] for c in untouched["spec"]["initContainers"]] == ["init"]
        for pod in (injected, untouched):
            main = {c["name"]: c for c in pod["spec"]["containers"]}["main"]
            assert main["image"] == f"python:{minor}"
    if pipeline == FAILING:
        assert "exit code 1" in team_nodes["check-limit"]["message"]
        traceback = normalise(without_shim_lines(_artifacts(argo, team_nodes["check-limit"])[LOGS].decode()))
        assert traceback.rstrip().endswith("ValueError: value 7 is above the limit 5")
        assert "wandb_kfp_shim" not in traceback and "wandb" not in traceback


def _runs_by_id(journey: Journey) -> dict[str, RunFile]:
    assert journey.team.offline_dir is not None
    runs = [read_run(path) for path in find_run_files(journey.team.offline_dir)]
    return {run.run_id: run for run in runs}


def test_every_component_pod_left_its_w_and_b_run_on_the_pvc(journey: Journey, webhook: Webhook) -> None:
    runs = _runs_by_id(journey)
    expected_ids = set()
    for step, expected in STEPS.items():
        ran = journey.runs[("team", expected["pipeline"])]
        pod = ran.pods[step]
        run_id = pod["metadata"]["annotations"][wh.RUN_ID_ANNOTATION]
        expected_ids.add(run_id)
        run = runs[run_id]
        kfp_run = kfp.run_id_of(ran.workflow)
        assert run.group == kfp_run, "group = the KFP run (pipeline/runid)"
        assert run.job_type == step, "job type = the step"
        assert run.name == expected["function"]
        assert run.project == journey.team.name, "no project set: the namespace"
        assert run.exit_code == expected.get("exit_code", 0)
        assert run.wandb_version == WANDB_OF_MINOR[expected["minor"]]
        assert run.python_version.startswith(expected["minor"] + ".")
        config = run.user_config()
        link = f"{wh.KUBEFLOW_URL}/#/runs/details/{kfp_run}"
        assert config["LINK_TO_KUBEFLOW_RUN"] == link and link in run.notes
        for name, value in expected["inputs"].items():
            assert config[name] == value, (step, name)
        where = config["kubeflow"]
        assert (where["workflow"], where["pod"], where["namespace"]) == (
            ran.name,
            pod["metadata"]["name"],
            journey.team.name,
        )
        assert where["kind"] == contract.KIND_V1_COMPONENT and where["run_id"] == kfp_run
        for name, argo_artifact in expected.get("input_files", {}).items():
            assert config["kubeflow"]["inputs"][name]["argo_artifact"] == argo_artifact
        summary = {key: value for key, value in run.summary.items() if not key.startswith("_")}
        assert summary == expected["summary"], step
        logged = {artifact["name"]: artifact for artifact in run.artifacts}
        assert logged.pop(expected["function"])["type"] == "kubeflow_component_file"
        assert set(logged) == expected["logged_artifacts"], step
        for name in logged:
            assert [entry["path"] for entry in logged[name]["entries"]] == ["data"]
            assert logged[name]["entries"][0]["size"] == len(expected["outputs"][name])
    assert set(runs) == expected_ids, "one run per component pod of the team, and nothing else"
    minors = ", ".join(f"{step} py{expected['minor']}" for step, expected in STEPS.items())
    TIER_SUMMARY["W&B offline runs read back from the PVC"] = f"{len(runs)} ({minors})"
    component_pods = sum(len(ran.pods) for ran in journey.runs.values())
    TIER_SUMMARY["KFP v1 component pods run"] = f"{component_pods} ({len(expected_ids)} injected)"


def test_scaled_to_zero_workflows_still_run_unrecorded(webhook: Webhook, argo: Argo, journey: Journey) -> None:
    cluster = argo.cluster
    before = wh.apiserver_metrics(cluster)
    runs_before = set(_runs_by_id(journey))
    webhook.scale(0)
    try:
        cluster.wait_for(lambda: not webhook.pods(), "webhook pods gone")
        (ran,) = _run_all(argo, [(journey.team, kfp.as_kfp_run(journey.compiled[JOURNEY], run_name="unrecorded"))])
        assert ran.phase == "Succeeded"
        baseline = journey.runs[("team", JOURNEY)].nodes()
        for step, node in ran.nodes().items():
            pod = ran.pods[step]
            assert wh.INJECTED_ANNOTATION not in pod["metadata"].get("annotations", {}), step
            assert [c["name"] for c in pod["spec"]["initContainers"]] == ["init"], step
            files, expected = _artifacts(argo, node), _artifacts(argo, baseline[step])
            assert {n: b for n, b in files.items() if n != LOGS} == {n: b for n, b in expected.items() if n != LOGS}, (
                step
            )
            assert _shim_lines(files[LOGS].decode()) == []
        assert set(_runs_by_id(journey)) == runs_before, "nothing recorded"
        # The apiserver did call, found no endpoint, and failed open (failurePolicy Ignore).
        after = wh.apiserver_metrics(cluster)
        name = wh.WEBHOOK_NAMES[0]
        failed_open = wh.metric_total(after, "apiserver_admission_webhook_fail_open_count", name=name) - (
            wh.metric_total(before, "apiserver_admission_webhook_fail_open_count", name=name)
        )
        assert failed_open >= len(ran.pods)
    finally:
        webhook.scale(2)
        webhook.wait_rolled_out()
    webhook.wait_called(journey.team.name)


def _gated_pod(namespace: str, name: str, batch: str) -> dict[str, Any]:
    """A pod the webhook's selectors send it (an Argo-labelled pod) that never runs: a scheduling gate
    keeps it Pending, so thousands cost the node nothing."""
    pod = wh.probe_pod(namespace, name, **{"wkw-node/batch": batch})
    pod["spec"]["schedulingGates"] = [{"name": "wkw-node/hold"}]
    return pod


@dataclass
class _Creator:
    """Threads creating pods back to back; each created pod as admission left it (annotations, env)."""

    cluster: NodeCluster
    namespace: str
    threads: int = 2
    batch: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    created: list[tuple[float, str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _loop(self, number: int) -> None:
        with self.cluster.api_client() as api_client:
            core = k8s.CoreV1Api(api_client)
            index = 0
            while not self._stop.is_set():
                name = f"load-{self.batch}-{number}-{index}"
                index += 1
                try:
                    pod = core.create_namespaced_pod(self.namespace, _gated_pod(self.namespace, name, self.batch))
                except Exception as error:  # recorded: every create must succeed
                    self.failures.append(f"{name}: {error}")
                    continue
                env = {e.name: e.value for e in pod.spec.containers[0].env or [] if e.value is not None}
                self.created.append((time.monotonic(), name, dict(pod.metadata.annotations or {}), env))

    def start(self) -> None:
        self._workers = [threading.Thread(target=self._loop, args=(n,), daemon=True) for n in range(self.threads)]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=60)

    def remove_pods(self) -> None:
        """One DELETE of the collection (never scheduled, they go at once)."""
        with self.cluster.api_client() as api_client:
            k8s.CoreV1Api(api_client).delete_collection_namespaced_pod(
                self.namespace, label_selector=f"wkw-node/batch={self.batch}", grace_period_seconds=0
            )


@pytest.fixture
def creating(argo: Argo, journey: Journey) -> Iterator[_Creator]:
    creator = _Creator(argo.cluster, journey.team.name)
    creator.start()
    try:
        yield creator
    finally:
        creator.stop()
        creator.remove_pods()


@pytest.mark.timeout(900)
def test_an_upgrade_while_pods_are_created_loses_no_injection(
    webhook: Webhook, argo: Argo, journey: Journey, creating: _Creator
) -> None:
    cluster = argo.cluster
    old_pods = {pod["metadata"]["name"] for pod in webhook.pods()}
    before = wh.apiserver_metrics(cluster)
    time.sleep(2)
    upgraded_at = time.monotonic()
    # A settings change (the config checksum rolls the Deployment): tags for every run from now on.
    webhook.upgrade(wandb={**wh.values(webhook.image)["wandb"], "tags": ["node-tier", "upgraded"]})

    def replaced() -> bool:
        names = {pod["metadata"]["name"] for pod in webhook.pods()}
        return webhook.rolled_out() and len(names) == 2 and not names & old_pods

    cluster.wait_for(replaced, "every old replica replaced and gone", timeout=600)
    rolled_out_at = time.monotonic()
    time.sleep(3)
    during = [entry for entry in creating.created if upgraded_at <= entry[0] <= rolled_out_at]
    after = wh.apiserver_metrics(cluster)
    creating.stop()

    assert creating.failures == []
    assert len(during) > 50, "pods were created throughout the rollout"
    missed = [name for _, name, annotations, _ in creating.created if wh.INJECTED_ANNOTATION not in annotations]
    assert missed == [], f"{len(missed)} of {len(creating.created)} pods created without injection"
    name = wh.WEBHOOK_NAMES[0]
    failed = wh.metric_total(after, "apiserver_admission_webhook_fail_open_count", name=name) - wh.metric_total(
        before, "apiserver_admission_webhook_fail_open_count", name=name
    )
    assert failed == 0, "the apiserver failed open on some calls"
    # The new setting reached the pods created once the new replicas served.
    tags = [env.get("WANDB_TAGS") for at, _, _, env in creating.created if at > rolled_out_at]
    assert tags and set(tags) == {"node-tier,upgraded"}
    TIER_SUMMARY["pods created during helm upgrade"] = (
        f"{len(creating.created)} ({len(during)} while it rolled out, "
        f"{rolled_out_at - upgraded_at:.1f} s), all injected"
    )
