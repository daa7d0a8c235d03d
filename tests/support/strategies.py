"""Hypothesis strategies for AdmissionReviews and pods, shared by the unit tests (webhook in process), the
soak test (the live server) and the end-to-end test (every patched pod dry-run on a real apiserver).

`mangled_pods()` starts from a real fixture pod and applies up to four changes: most are what users and
other webhooks really do to pods (opt-in labels, wandb.ai/* annotations with good and bad values, env and
envFrom, sidecars and mounts whose names collide with the webhook's), some scatter arbitrary JSON into
fields the webhook reads (a shape no apiserver sends: the webhook must answer 400, never 500).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from tests.fixtures import pods as fixture_pods
from tests.support.reviews import admission_review

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=25,
)

ANNOTATION_VALUES = {
    "wandb.ai/project": ["team", "bad/project", "x" * 300, "proj ect", ""],
    "wandb.ai/entity": ["ml-team", "a:b"],
    "wandb.ai/tags": ["a,b", ",,", "t" * 70],
    "wandb.ai/api-key-secret": ["team-key", "team-key/token", "team-key/..", "a..b", "Team", "a/", "k/.hidden"],
    "wandb.ai/base-url": ["https://wandb.example.com", "ftp://x", "https://h/with space"],
    "wandb.ai/kubeflow-url": ["https://kf.example.com/pipeline", "nope"],
    "wandb.ai/init-timeout": ["30", "0", "601", "\u00b2", "\u0663", "1e3"],
    "wandb.ai/shim": ["enabled", "disabled", "maybe"],
    "wandb.ai/pythonpath": ["/app:/lib", "relative", "/a b"],
    "wandb.ai/pipelines": ["v2-*", "bad pattern!"],
}
ENV_ENTRIES = [
    {"name": "PYTHONPATH", "value": "/app"},
    {"name": "PYTHONPATH", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
    {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "own", "key": "k"}}},
    {"name": "WANDB_RUN_ID", "value": "my-run"},
    {"name": "WANDB_PROJECT", "value": "mine"},
    {"name": "WANDB_DIR", "value": "/data/wandb"},
    {"name": "OTHER", "value": "1"},
]
ENV_FROM = [
    [{"configMapRef": {"name": "team-wandb"}}],
    [{"secretRef": {"name": "team-key", "optional": True}}],
    [{"configMapRef": {"name": "metadata-grpc-configmap", "optional": True}}],
]


def _main(pod: dict[str, Any]) -> dict[str, Any]:
    for container in pod["spec"]["containers"]:
        if container.get("name") == "main":
            return container
    return pod["spec"]["containers"][0]


def _set_label(key: str, value: str) -> Callable[[dict[str, Any]], None]:
    return lambda pod: pod["metadata"].setdefault("labels", {}).__setitem__(key, value)


def _set_annotation(key: str, value: str) -> Callable[[dict[str, Any]], None]:
    return lambda pod: pod["metadata"].setdefault("annotations", {}).__setitem__(key, value)


def _add_env(entry: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        env = _main(pod).setdefault("env", [])
        if all(var.get("name") != entry["name"] for var in env):
            env.append(copy.deepcopy(entry))

    return change


def _set_env_from(sources: list[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    return lambda pod: _main(pod).__setitem__("envFrom", copy.deepcopy(sources))


def _container_named(name: str, field: str) -> Callable[[dict[str, Any]], None]:
    """A sidecar or init container of that name (names stay unique within the pod, as the apiserver wants)."""

    def change(pod: dict[str, Any]) -> None:
        spec = pod["spec"]
        taken = [c.get("name") for c in spec.get("containers", []) + spec.get("initContainers", [])]
        if name not in taken:
            spec.setdefault(field, []).append({"name": name, "image": "busybox:1.36"})

    return change


def _mount_at(volume: str, path: str) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        volumes = pod["spec"].setdefault("volumes", [])
        if all(v.get("name") != volume for v in volumes):
            volumes.append({"name": volume, "emptyDir": {}})
        mounts = _main(pod).setdefault("volumeMounts", [])
        if all(m.get("mountPath") != path for m in mounts):
            mounts.append({"name": volume, "mountPath": path})

    return change


def _volume_named(name: str) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        volumes = pod["spec"].setdefault("volumes", [])
        if all(v.get("name") != name for v in volumes):
            volumes.append({"name": name, "emptyDir": {}})

    return change


def _drop(path: tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def change(pod: dict[str, Any]) -> None:
        target: Any = pod
        for key in path[:-1]:
            target = _main(pod) if key == "main" else target.get(key, {})
        if isinstance(target, dict):
            target.pop(path[-1], None)

    return change


def _scatter(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    """Arbitrary JSON at a field the webhook reads."""

    def change(pod: dict[str, Any]) -> None:
        target: Any = pod
        for key in path[:-1]:
            target = target.setdefault(key, {}) if isinstance(target, dict) else {}
        if isinstance(target, dict):
            target[path[-1]] = value

    return change


realistic_changes = st.one_of(
    st.sampled_from(["true", "false", "enabled", "yes"]).map(lambda value: _set_label("wandb.ai/inject", value)),
    st.sampled_from([(key, value) for key, values in ANNOTATION_VALUES.items() for value in values]).map(
        lambda pair: _set_annotation(*pair)
    ),
    st.sampled_from(ENV_ENTRIES).map(_add_env),
    st.sampled_from(ENV_FROM).map(_set_env_from),
    st.sampled_from(["wandb-shim-install", "sidecar"]).map(lambda name: _container_named(name, "containers")),
    st.sampled_from(["wandb-shim-install", "setup"]).map(lambda name: _container_named(name, "initContainers")),
    st.sampled_from([("mine", "/wandb-shim"), ("mine", "/wandb-offline"), ("data", "/data")]).map(
        lambda pair: _mount_at(*pair)
    ),
    st.sampled_from(["wandb-offline", "wandb-shim", "scratch"]).map(_volume_named),
    st.sampled_from(
        [
            ("spec", "initContainers"),
            ("spec", "volumes"),
            ("metadata", "annotations"),
            ("spec", "main", "env"),
            ("spec", "main", "volumeMounts"),
        ]
    ).map(_drop),
)
scatter_paths = st.sampled_from(
    [
        ("metadata", "labels"),
        ("metadata", "annotations"),
        ("metadata", "name"),
        ("metadata", "ownerReferences"),
        ("spec", "initContainers"),
        ("spec", "volumes"),
        ("spec", "containers"),
        ("metadata", "annotations", "wandb.ai/tags"),
        ("metadata", "annotations", "wandb.ai/project"),
        ("metadata", "labels", "wandb.ai/inject"),
        ("metadata", "annotations", "workflows.argoproj.io/template"),
    ]
)
arbitrary_changes = st.tuples(scatter_paths, json_values).map(lambda pair: _scatter(*pair))


@functools.cache
def _fixture_pods() -> dict[str, dict[str, Any]]:
    """Every fixture pod, parsed once (YAML parsing would cost more than the review it feeds)."""
    return {entry["name"]: fixture_pods.load_pod(entry["name"]) for entry in fixture_pods.load_index()}


@st.composite
def mangled_pods(draw: st.DrawFn, arbitrary: bool = True) -> dict[str, Any]:
    """A real fixture pod with up to four changes (realistic ones, and arbitrary JSON when `arbitrary`)."""
    pods = _fixture_pods()
    pod = copy.deepcopy(pods[draw(st.sampled_from(sorted(pods)))])
    changes = realistic_changes | arbitrary_changes if arbitrary else realistic_changes
    for change in draw(st.lists(changes, max_size=4)):
        with contextlib.suppress(TypeError, AttributeError, KeyError, IndexError):
            change(pod)  # a realistic change after an arbitrary one may find no place to go
    # The pod must not share objects with what hypothesis drew (a later change would mutate them).
    return copy.deepcopy(pod)


@st.composite
def review_bodies(draw: st.DrawFn) -> bytes:
    """AdmissionReview bodies as an apiserver, or a confused client, might send them."""
    pod = draw(mangled_pods())
    review = admission_review(
        pod,
        uid=draw(st.text(min_size=1, max_size=40)),
        operation=draw(st.sampled_from(["CREATE", "CREATE", "CREATE", "UPDATE", "DELETE", "CONNECT"])),
        namespace=draw(st.sampled_from(["kubeflow-user", "team-a", "kube-system"])),
    )
    if draw(st.booleans()):
        review["request"]["namespace"] = draw(st.none() | st.text(max_size=20))
    return json.dumps(review).encode()


@st.composite
def malformed_bodies(draw: st.DrawFn) -> bytes:
    """Bodies that are not AdmissionReviews: bytes, truncated reviews, JSON of the wrong shape."""
    kind = draw(st.sampled_from(["bytes", "truncated", "json", "envelope"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    whole = json.dumps(admission_review(draw(mangled_pods(arbitrary=False)))).encode()
    if kind == "truncated":
        return whole[: draw(st.integers(min_value=0, max_value=len(whole) - 1))]
    envelope = json.loads(whole)
    envelope[draw(st.sampled_from(["apiVersion", "kind", "request"]))] = draw(json_values)
    return json.dumps(envelope).encode()
