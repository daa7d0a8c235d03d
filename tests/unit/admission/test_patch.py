"""The injection patch over every real fixture, applied with a JSON-patch library and read back."""

from __future__ import annotations

import copy
import json

import jsonpatch
import pytest

from tests.fixtures import pods as fixture_pods
from webhook.admission import config as cfg
from webhook.admission.envvars import run_id_for
from webhook.admission.patch import escape_pointer
from webhook.admission.review import evaluate
from webhook.shim import contract

ENABLED = cfg.NamespaceInfo(labels={cfg.INJECT_LABEL: cfg.NAMESPACE_INJECT_VALUE})
SETTINGS = cfg.Settings()
INJECTABLE = [
    entry
    for entry in fixture_pods.load_index()
    if entry["kind"] in (*contract.SHIM_KINDS, contract.KIND_ARGO)
]


def injected(pod, settings=SETTINGS, info=ENABLED, namespace="kubeflow-user"):
    evaluation = evaluate(copy.deepcopy(pod), namespace, info, settings, "uid")
    assert evaluation.injection is not None, evaluation.decision.reason
    return jsonpatch.apply_patch(pod, evaluation.injection.operations), evaluation


def main_of(pod):
    return next(c for c in pod["spec"]["containers"] if c["name"] == "main")


def env_of(container):
    return {var["name"]: var for var in container.get("env") or []}


def first_of(kind):
    return fixture_pods.load_pod(fixture_pods.fixtures_of_kind(kind)[0])


@pytest.mark.parametrize("entry", INJECTABLE, ids=lambda entry: entry["name"])
def test_every_injectable_fixture(entry):
    pod = fixture_pods.load_pod(entry["name"])
    mutated, evaluation = injected(pod)
    env = env_of(main_of(mutated))
    key = env[contract.WANDB_API_KEY]
    assert "value" not in key
    assert key["valueFrom"]["secretKeyRef"] == {"name": "wandb-api-key", "key": "api-key", "optional": True}
    for name in (
        contract.WANDB_BASE_URL,
        contract.WANDB_PROJECT,
        contract.WANDB_RUN_GROUP,
        contract.WANDB_RUN_ID,
        contract.POD_KIND,
        contract.POD_NAME,
        contract.POD_NAMESPACE,
        contract.POD_UID,
    ):
        assert name in env, name
    labels = mutated["metadata"]["labels"]
    assert env[contract.WANDB_RUN_GROUP]["value"] == labels.get(
        "pipeline/runid", labels["workflows.argoproj.io/workflow"]
    )
    assert mutated["metadata"]["annotations"][cfg.INJECTED_ANNOTATION] == entry["kind"]
    assert mutated["metadata"]["annotations"][cfg.RUN_ID_ANNOTATION] == env[contract.WANDB_RUN_ID]["value"]
    others = [c for c in mutated["spec"]["containers"] if c["name"] != "main"]
    assert others == [c for c in pod["spec"]["containers"] if c["name"] != "main"], "only main is touched"
    init_names = [c["name"] for c in mutated["spec"].get("initContainers") or []]
    if entry["kind"] in contract.SHIM_KINDS:
        assert evaluation.injection.with_shim
        assert init_names[-1] == contract.INIT_CONTAINER_NAME
        assert env["PYTHONPATH"]["value"].split(":")[0] == contract.bootstrap_dir()
        mount = next(m for m in main_of(mutated)["volumeMounts"] if m["name"] == contract.VOLUME_NAME)
        assert mount == {
            "name": contract.VOLUME_NAME,
            "mountPath": contract.SHIM_MOUNT_PATH,
            "readOnly": True,
        }
        volume = next(v for v in mutated["spec"]["volumes"] if v["name"] == contract.VOLUME_NAME)
        assert volume["emptyDir"]["sizeLimit"] == SETTINGS.shim_size_limit
    else:
        assert contract.INIT_CONTAINER_NAME not in init_names
        assert "PYTHONPATH" not in env or env["PYTHONPATH"] == env_of(main_of(pod)).get("PYTHONPATH")
    if entry["kind"] == contract.KIND_V1_COMPONENT:
        spec_ref = env[contract.COMPONENT_SPEC]["valueFrom"]["fieldRef"]["fieldPath"]
        assert spec_ref == "metadata.annotations['pipelines.kubeflow.org/component_spec']"
    if entry["kind"] in contract.SHIM_KINDS:
        assert env[contract.WANDB_JOB_TYPE]["value"] == entry["component"]


@pytest.mark.parametrize("entry", INJECTABLE, ids=lambda entry: entry["name"])
def test_second_pass_yields_no_patch(entry):
    mutated, _ = injected(fixture_pods.load_pod(entry["name"]))
    again = evaluate(mutated, "kubeflow-user", ENABLED, SETTINGS, "uid-2")
    assert again.injection is None and again.decision.reason == "already injected"


def test_init_container_passes_pod_security_restricted():
    mutated, _ = injected(first_of(contract.KIND_V2_EXECUTOR))
    init = mutated["spec"]["initContainers"][-1]
    security = init["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert init["resources"]["requests"] and init["resources"]["limits"]
    assert init["command"][: len(contract.INSTALL_COMMAND)] == contract.INSTALL_COMMAND


def test_existing_variables_are_never_overwritten():
    pod = first_of(contract.KIND_V1_COMPONENT)
    main_of(pod)["env"] = [
        {"name": "WANDB_PROJECT", "value": "mine"},
        {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "own", "key": "k"}}},
        {"name": "WANDB_RUN_ID", "value": "my-run"},
    ]
    mutated, _ = injected(pod)
    env = main_of(mutated)["env"]
    assert env[:3] == main_of(pod)["env"]
    assert [var["name"] for var in env].count("WANDB_PROJECT") == 1
    assert mutated["metadata"]["annotations"][cfg.RUN_ID_ANNOTATION] == "my-run"


def test_pythonpath_value_is_prefixed_not_replaced():
    pod = first_of(contract.KIND_V2_EXECUTOR)
    main_of(pod)["env"] = [{"name": "PYTHONPATH", "value": "/app:/lib"}]
    mutated, _ = injected(pod)
    assert env_of(main_of(mutated))["PYTHONPATH"]["value"] == f"{contract.bootstrap_dir()}:/app:/lib"


def test_pythonpath_from_valuefrom_gets_env_without_shim_and_a_warning():
    pod = first_of(contract.KIND_V2_EXECUTOR)
    main_of(pod)["env"] = [
        {"name": "PYTHONPATH", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}
    ]
    mutated, evaluation = injected(pod)
    assert not evaluation.injection.with_shim
    assert any("PYTHONPATH" in warning for warning in evaluation.warnings)
    assert contract.INIT_CONTAINER_NAME not in [
        c["name"] for c in mutated["spec"].get("initContainers") or []
    ]
    assert contract.WANDB_PROJECT in env_of(main_of(mutated))


def test_patch_is_valid_when_optional_lists_are_missing():
    pod = first_of(contract.KIND_V1_COMPONENT)
    for key in ("initContainers", "volumes"):
        pod["spec"].pop(key, None)
    for key in ("env", "volumeMounts"):
        main_of(pod).pop(key, None)
    pod["metadata"].pop("annotations")
    pod["metadata"]["labels"][cfg.INJECT_LABEL] = "true"
    mutated, _ = injected(pod, info=cfg.NamespaceInfo())
    assert [c["name"] for c in mutated["spec"]["initContainers"]] == [contract.INIT_CONTAINER_NAME]
    assert [v["name"] for v in mutated["spec"]["volumes"]] == [contract.VOLUME_NAME]
    assert cfg.INJECTED_ANNOTATION in mutated["metadata"]["annotations"]


def test_json_pointer_escaping():
    assert escape_pointer("wandb.ai/injected") == "wandb.ai~1injected"
    assert escape_pointer("a~b/c") == "a~0b~1c"
    pod = first_of(contract.KIND_ARGO)
    pod["metadata"].setdefault("annotations", {})["x~y/z"] = "kept"
    pod["metadata"]["labels"][cfg.INJECT_LABEL] = "true"
    mutated, _ = injected(pod, info=cfg.NamespaceInfo())
    assert mutated["metadata"]["annotations"]["x~y/z"] == "kept"


def test_run_id_is_stable_per_pod_and_unique_across_pods():
    ids = {run_id_for(fixture_pods.load_pod(entry["name"]), "ns", "uid-a") for entry in INJECTABLE}
    assert len(ids) == len(INJECTABLE)
    pod = first_of(contract.KIND_V1_COMPONENT)
    assert run_id_for(pod, "ns", "uid-a") == run_id_for(pod, "ns", "uid-b")
    assert run_id_for(pod, "ns", "x") != run_id_for(pod, "other-ns", "x")
    for run_id in ids:
        assert len(run_id) <= 64 and not set(run_id) & set(":;,#?/'")


def test_project_defaults_to_pipeline_name_then_namespace_and_annotations_override():
    v2 = first_of(contract.KIND_V2_EXECUTOR)
    mutated, evaluation = injected(v2)
    assert env_of(main_of(mutated))[contract.WANDB_PROJECT]["value"] == evaluation.facts.pipeline_name
    mutated, _ = injected(first_of(contract.KIND_V1_COMPONENT))
    assert env_of(main_of(mutated))[contract.WANDB_PROJECT]["value"] == "kubeflow-user"
    info = cfg.NamespaceInfo(
        labels=ENABLED.labels, annotations={"wandb.ai/project": "team", "wandb.ai/entity": "ent"}
    )
    pod = first_of(contract.KIND_V1_COMPONENT)
    pod["metadata"]["annotations"]["wandb.ai/project"] = "pod-level"
    env = env_of(main_of(injected(pod, info=info)[0]))
    assert (env[contract.WANDB_PROJECT]["value"], env[contract.WANDB_ENTITY]["value"]) == ("pod-level", "ent")


def test_shim_can_be_switched_off_by_annotation():
    pod = first_of(contract.KIND_V1_COMPONENT)
    pod["metadata"]["annotations"]["wandb.ai/shim"] = "disabled"
    mutated, evaluation = injected(pod)
    assert not evaluation.injection.with_shim
    assert "PYTHONPATH" not in env_of(main_of(mutated))


def test_offline_pvc_mounts_and_points_wandb_dir():
    settings = cfg.Settings(offline_pvc="wandb-runs", offline_dir="/wandb-offline")
    mutated, _ = injected(first_of(contract.KIND_V2_EXECUTOR), settings=settings)
    env = env_of(main_of(mutated))
    assert env[contract.WANDB_DIR]["value"] == "/wandb-offline"
    volume = next(v for v in mutated["spec"]["volumes"] if v["name"] == contract.OFFLINE_VOLUME_NAME)
    assert volume["persistentVolumeClaim"] == {"claimName": "wandb-runs"}
    assert {"name": contract.OFFLINE_VOLUME_NAME, "mountPath": "/wandb-offline"} in main_of(mutated)[
        "volumeMounts"
    ]


def test_entity_tags_and_kubeflow_url_from_settings():
    settings = cfg.Settings(
        entity="acme", tags=["kfp", "prod"], kubeflow_url="https://kf.example.com/pipeline/"
    )
    env = env_of(main_of(injected(first_of(contract.KIND_V1_COMPONENT), settings=settings)[0]))
    assert env[contract.WANDB_ENTITY]["value"] == "acme"
    assert env[contract.WANDB_TAGS]["value"] == "kfp,prod"
    assert env[contract.WANDB_KUBEFLOW_URL]["value"] == "https://kf.example.com/pipeline"


def test_image_volume_delivery_mounts_the_image_instead_of_copying():
    settings = cfg.Settings(shim_delivery="imageVolume", shim_image="registry.example/wkw@sha256:abc")
    mutated, evaluation = injected(first_of(contract.KIND_V1_COMPONENT), settings=settings)
    assert evaluation.injection.with_shim
    assert contract.INIT_CONTAINER_NAME not in [
        c["name"] for c in mutated["spec"].get("initContainers") or []
    ]
    volume = next(v for v in mutated["spec"]["volumes"] if v["name"] == contract.VOLUME_NAME)
    assert volume["image"] == {"reference": "registry.example/wkw@sha256:abc", "pullPolicy": "IfNotPresent"}
    pythonpath = env_of(main_of(mutated))["PYTHONPATH"]["value"]
    assert pythonpath == f"{contract.SHIM_MOUNT_PATH}/opt/wandb-kfp-webhook/shim/bootstrap"
    again = evaluate(mutated, "kubeflow-user", ENABLED, settings, "uid-2")
    assert again.injection is None


def test_image_pythonpath_annotation_keeps_the_images_directories_after_the_bootstrap():
    pod = first_of(contract.KIND_V2_EXECUTOR)
    pod["metadata"]["annotations"]["wandb.ai/pythonpath"] = "/app:/opt/lib"
    mutated, _ = injected(pod)
    assert env_of(main_of(mutated))["PYTHONPATH"]["value"] == f"{contract.bootstrap_dir()}:/app:/opt/lib"
    pod["metadata"]["annotations"]["wandb.ai/pythonpath"] = "relative:dir"
    mutated, evaluation = injected(pod)
    assert env_of(main_of(mutated))["PYTHONPATH"]["value"] == contract.bootstrap_dir()
    assert any("wandb.ai/pythonpath" in warning for warning in evaluation.warnings)


USER_ENV_FROM = [{"configMapRef": {"name": "team-wandb"}}, {"secretRef": {"name": "team-key"}}]


def test_envfrom_turns_the_standard_variables_into_defaults_the_shim_applies():
    pod = first_of(contract.KIND_V1_COMPONENT)
    main_of(pod)["envFrom"] = USER_ENV_FROM
    mutated, evaluation = injected(pod)
    env = env_of(main_of(mutated))
    assert evaluation.injection.with_shim
    for name in contract.STANDARD_WANDB_VARIABLES:
        assert name not in env, f"{name} in env would override what envFrom sets"
    assert env[contract.DEFAULT_PREFIX + contract.WANDB_BASE_URL]["value"] == "https://api.wandb.ai"
    key = env[contract.DEFAULT_PREFIX + contract.WANDB_API_KEY]
    assert key["valueFrom"]["secretKeyRef"]["name"] == "wandb-api-key"
    assert env[contract.POD_KIND]["value"] == contract.KIND_V1_COMPONENT  # identity is ours: set as is
    assert env["PYTHONPATH"]["value"] == f"{contract.bootstrap_dir()}:$(PYTHONPATH)"


def test_kfp_own_metadata_configmap_is_not_a_user_envfrom():
    pod = first_of(contract.KIND_V2_EXECUTOR)
    assert main_of(pod)["envFrom"] == [{"configMapRef": {"name": "metadata-grpc-configmap", "optional": True}}]
    mutated, _ = injected(pod)
    env = env_of(main_of(mutated))
    assert contract.WANDB_BASE_URL in env and env["PYTHONPATH"]["value"] == contract.bootstrap_dir()


def test_envfrom_without_the_shim_leaves_the_standard_variables_out_with_a_warning():
    pod = first_of(contract.KIND_ARGO)
    main_of(pod)["envFrom"] = USER_ENV_FROM
    mutated, evaluation = injected(pod)
    env = env_of(main_of(mutated))
    assert not any(name in env for name in contract.STANDARD_WANDB_VARIABLES)
    assert not any(name.startswith(contract.DEFAULT_PREFIX) for name in env)
    assert any("envFrom" in warning and "WANDB_BASE_URL" in warning for warning in evaluation.warnings)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            lambda pod: pod["spec"]["containers"].append({"name": contract.INIT_CONTAINER_NAME, "image": "busybox"}),
            "already named",
        ),
        (
            lambda pod: main_of(pod).setdefault("volumeMounts", []).append(
                {"name": "mine", "mountPath": contract.SHIM_MOUNT_PATH + "/"}
            ),
            "already mounts",
        ),
    ],
)
def test_a_name_or_mount_path_in_use_gets_env_without_the_shim(change, why):
    pod = first_of(contract.KIND_V2_EXECUTOR)
    change(pod)
    mutated, evaluation = injected(pod)
    assert not evaluation.injection.with_shim
    assert any(why in warning for warning in evaluation.warnings)
    names = [c["name"] for c in mutated["spec"]["containers"] + mutated["spec"].get("initContainers", [])]
    assert len(names) == len(set(names))
    paths = [m["mountPath"].rstrip("/") for m in main_of(mutated).get("volumeMounts", [])]
    assert len(paths) == len(set(paths))
    assert contract.WANDB_PROJECT in env_of(main_of(mutated))


def test_offline_volume_is_left_out_when_its_name_or_path_is_taken():
    settings = cfg.Settings(offline_pvc="runs")
    pod = first_of(contract.KIND_V1_COMPONENT)
    pod["spec"].setdefault("volumes", []).append({"name": contract.OFFLINE_VOLUME_NAME, "emptyDir": {}})
    mutated, evaluation = injected(pod, settings=settings)
    assert [v["name"] for v in mutated["spec"]["volumes"]].count(contract.OFFLINE_VOLUME_NAME) == 1
    assert contract.WANDB_DIR not in env_of(main_of(mutated))
    assert any("offline runs stay in the pod" in warning for warning in evaluation.warnings)
    assert evaluation.injection.with_shim


def test_v1_component_gets_its_argo_artifacts_for_lineage():
    mutated, _ = injected(fixture_pods.load_pod("v1-count-lines"))
    value = env_of(main_of(mutated))[contract.ARGO_ARTIFACTS]["value"]
    assert json.loads(value)["outputs"]["/tmp/outputs/summary/data"] == "count-lines-summary"
    assert json.loads(value)["inputs"] == {"/tmp/inputs/text/data": "text"}


@pytest.mark.parametrize("kind", [contract.KIND_V2_EXECUTOR, contract.KIND_ARGO])
def test_argo_artifacts_only_for_v1_components(kind):
    mutated, _ = injected(first_of(kind))
    assert contract.ARGO_ARTIFACTS not in env_of(main_of(mutated))


def test_argo_artifacts_not_set_without_the_shim_nor_over_the_pods_own_value():
    pod = fixture_pods.load_pod("v1-count-lines")
    pod["metadata"]["annotations"]["wandb.ai/shim"] = "disabled"
    mutated, _ = injected(pod)
    assert contract.ARGO_ARTIFACTS not in env_of(main_of(mutated))
    pod = fixture_pods.load_pod("v1-count-lines")
    main_of(pod)["env"].append({"name": contract.ARGO_ARTIFACTS, "value": "{}"})
    mutated, _ = injected(pod)
    assert env_of(main_of(mutated))[contract.ARGO_ARTIFACTS]["value"] == "{}"
