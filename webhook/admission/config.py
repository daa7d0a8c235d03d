"""Server settings and the per-pod injection config, resolved lowest to highest.

built-in defaults < server settings (YAML file, then WANDB_KFP_WEBHOOK_* env) < namespace annotations
< pod annotations. An annotation with an invalid value is ignored and reported as a warning, never fatal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from webhook.shim import contract

ANNOTATION_PREFIX = "wandb.ai/"
#: A list setting that env and files may also give as "a,b,c".
CommaList = Annotated[list[str], NoDecode]
INJECT_LABEL = "wandb.ai/inject"
NAMESPACE_INJECT_VALUE = "enabled"
POD_INJECT_VALUE = "true"
POD_OPT_OUT_VALUE = "false"
INJECTED_ANNOTATION = "wandb.ai/injected"
RUN_ID_ANNOTATION = "wandb.ai/run-id"
PIPELINES_ANNOTATION = "wandb.ai/pipelines"
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")


#: A Kubernetes resource quantity (k8s.io/apimachinery/pkg/api/resource), as the apiserver parses it.
QUANTITY = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$")


class ContainerResources(BaseModel):
    """Small explicit resources for the init container that copies the shim."""

    cpu_request: str = "50m"
    cpu_limit: str = "1"
    memory_request: str = "32Mi"
    memory_limit: str = "256Mi"

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not QUANTITY.match(value):
            raise ValueError("must be a Kubernetes quantity such as 50m or 256Mi")
        return value


class Settings(BaseSettings):
    """Server-wide settings: what the Helm chart's ConfigMap and env give the server."""

    model_config = SettingsConfigDict(
        env_prefix="WANDB_KFP_WEBHOOK_", env_nested_delimiter="__", extra="forbid", yaml_file=None
    )

    # What gets injected (the defaults namespaces and pods can override by annotation).
    api_key_secret_name: str = "wandb-api-key"  # noqa: S105 - a Secret's name, not a secret
    api_key_secret_key: str = "api-key"  # noqa: S105 - a key name inside that Secret
    base_url: str = "https://api.wandb.ai"
    project: str | None = None
    entity: str | None = None
    tags: CommaList = Field(default_factory=list)
    kubeflow_url: str | None = None
    pipelines: CommaList = Field(default_factory=list)
    init_timeout_seconds: int = Field(default=contract.DEFAULT_INIT_TIMEOUT_SECONDS, ge=1, le=600)
    max_upload_bytes: int = Field(default=contract.DEFAULT_MAX_UPLOAD_BYTES, ge=0)
    shim_enabled: bool = True
    #: The shim prints `wandb-kfp-shim: W&B run: <url>` to stderr (the step's KFP logs) for online runs.
    run_link_in_logs: bool = True
    # How the shim is delivered.
    shim_image: str = "ghcr.io/wandb/wandb-kfp-webhook:0.1.0"
    shim_image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    shim_size_limit: str = "512Mi"  # every minor (CPython 3.7-3.13, compat sites) lays out to about 360 MB
    shim_resources: ContainerResources = Field(default_factory=ContainerResources)
    #: initContainer copies the shim into an emptyDir (works everywhere); imageVolume mounts the image
    #: read-only instead (needs the Kubernetes ImageVolume feature, beta since 1.33).
    shim_delivery: Literal["initContainer", "imageVolume"] = "initContainer"
    #: Where the image holds the laid-out shim (bootstrap/, lib/, site/), for imageVolume delivery.
    shim_image_layout_path: str = "/opt/wandb-kfp-webhook/shim"
    #: Claim name of a PVC mounted at offline_dir for offline runs (otherwise they stay in the pod).
    offline_pvc: str | None = None
    offline_dir: str = "/wandb-offline"
    #: `wandb.ai/*` annotations (names without the prefix, e.g. base-url, api-key-secret) that neither
    #: namespaces nor pods may set: the server settings always apply.
    locked_annotations: CommaList = Field(default_factory=list)
    #: The same for pods only: a namespace may set these, its pods may not.
    pod_locked_annotations: CommaList = Field(default_factory=list)
    # Who is never touched.
    excluded_namespaces: CommaList = Field(default_factory=lambda: list(SYSTEM_NAMESPACES))
    own_namespace: str | None = None
    # Serving.
    host: str = "0.0.0.0"  # noqa: S104 - a webhook must listen on the pod IP
    port: int = Field(default=8443, ge=1, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    workers: int = Field(default=2, ge=1)
    #: A request must arrive whole (headers and body) within this many seconds of its first byte.
    request_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    #: Open connections per worker; past it the oldest one that has not completed a request is dropped.
    max_connections: int = Field(default=1000, ge=16)
    #: On SIGTERM, keep accepting and answering this long (each answer closing its connection) before
    #: stopping, so the apiserver moves to the other replicas instead of hitting a closed port.
    shutdown_drain_seconds: float = Field(default=0.0, ge=0, le=30)
    watch_namespaces: bool = True

    @field_validator(
        "tags", "pipelines", "excluded_namespaces", "locked_annotations", "pod_locked_annotations", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("locked_annotations", "pod_locked_annotations")
    @classmethod
    def _known_annotations(cls, value: list[str]) -> list[str]:
        known = {name.removeprefix(ANNOTATION_PREFIX) for name in OVERRIDE_ANNOTATIONS}
        unknown = [name for name in value if name.removeprefix(ANNOTATION_PREFIX) not in known]
        if unknown:
            raise ValueError(f"unknown annotation(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return [name.removeprefix(ANNOTATION_PREFIX) for name in value]

    @field_validator("api_key_secret_name")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        problem = secret_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("api_key_secret_key")
    @classmethod
    def _secret_key(cls, value: str) -> str:
        problem = secret_key_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("offline_pvc")
    @classmethod
    def _claim_name(cls, value: str | None) -> str | None:
        if value is not None and secret_name_problem(value):
            raise ValueError("a PersistentVolumeClaim name must be a DNS-1123 subdomain")
        return value

    @field_validator("shim_size_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not QUANTITY.match(value):
            raise ValueError("must be a Kubernetes quantity such as 512Mi")
        return value

    def locked_annotation_names(self) -> frozenset[str]:
        return frozenset(ANNOTATION_PREFIX + name for name in self.locked_annotations)

    def pod_locked_annotation_names(self) -> frozenset[str]:
        return frozenset(ANNOTATION_PREFIX + name for name in self.pod_locked_annotations)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the YAML file (if any), then env, then explicit overrides (CLI flags)."""
    if config_file is None:
        return Settings(**overrides)
    with_file = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "yaml_file": config_file}})
    settings: Settings = with_file(**overrides)
    return settings


# --- Per-pod injection config ---------------------------------------------------------------------


@dataclass(frozen=True)
class InjectionConfig:
    """The values one pod gets, after every layer was applied."""

    api_key_secret_name: str
    api_key_secret_key: str
    base_url: str
    project: str | None
    entity: str | None
    tags: tuple[str, ...]
    kubeflow_url: str | None
    init_timeout_seconds: int
    shim_enabled: bool
    #: The image's own PYTHONPATH, which a pod-level PYTHONPATH would otherwise hide (wandb.ai/pythonpath).
    image_pythonpath: str | None = None
    #: Whether the shim prints the online run's URL to stderr (run_link_in_logs, wandb.ai/run-link).
    run_link: bool = True
    warnings: tuple[str, ...] = field(default=())


_NAME = re.compile(r"^[^/\\#?%:\s][^/\\#?%:]{0,127}$")
_TAG = re.compile(r"^[^,]{1,64}$")
# Exactly what the apiserver checks (k8s.io/apimachinery validation): a Secret's name is a DNS-1123
# subdomain, a key inside it passes IsConfigMapKey. A looser check would let a pod annotation make every
# pod of a namespace invalid.
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_CONFIG_MAP_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_URL = re.compile(r"^https?://[^\s/?#]+(:\d+)?(/[^\s]*)?$")
_SWITCH = {"enabled": True, "true": True, "on": True, "disabled": False, "false": False, "off": False}


class AnnotationError(ValueError):
    """An annotation value that cannot be used; its message never quotes the value."""


def secret_name_problem(name: str) -> str | None:
    """Why the apiserver would refuse `name` as a Secret name, or None."""
    if not name or len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return "a Secret name must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253)"
    return None


def secret_key_problem(key: str) -> str | None:
    """Why the apiserver would refuse `key` as a key of a Secret (IsConfigMapKey), or None."""
    if not key or len(key) > 253 or not _CONFIG_MAP_KEY.match(key):
        return "a Secret key must be 1-253 letters, digits, '-', '_' or '.'"
    if key in (".", "..") or key.startswith(".."):
        return "a Secret key must not be '.' or '..' or start with '..'"
    return None


def _parse_name(value: str) -> dict[str, Any]:
    if not _NAME.match(value):
        raise AnnotationError("must be 1-128 characters without / \\ # ? % :")
    return {"value": value}


def _parse_tags(value: str) -> dict[str, Any]:
    tags = tuple(part.strip() for part in value.split(",") if part.strip())
    if not tags or not all(_TAG.match(tag) for tag in tags):
        raise AnnotationError("must be a comma-separated list of tags of 1-64 characters")
    return {"value": tags}


def _parse_secret(value: str) -> dict[str, Any]:
    name, separator, key = value.partition("/")
    problem = secret_name_problem(name) or (secret_key_problem(key) if separator else None)
    if problem:
        raise AnnotationError(f"must be a Secret name, optionally followed by /<key>: {problem}")
    return {"name": name, "key": key or None}


def _parse_url(value: str) -> dict[str, Any]:
    if not _URL.match(value):
        raise AnnotationError("must be an http(s) URL")
    return {"value": value.rstrip("/")}


def _parse_timeout(value: str) -> dict[str, Any]:
    if not re.fullmatch(r"[0-9]{1,3}", value) or not 1 <= int(value) <= 600:
        raise AnnotationError("must be a whole number of seconds from 1 to 600")
    return {"value": int(value)}


_PATHS = re.compile(r"^/[^:\s]*(:/[^:\s]*)*$")


def _parse_paths(value: str) -> dict[str, Any]:
    if not _PATHS.match(value):
        raise AnnotationError("must be absolute directories separated by ':'")
    return {"value": value}


def _parse_switch(value: str) -> dict[str, Any]:
    if value.lower() not in _SWITCH:
        raise AnnotationError("must be enabled or disabled")
    return {"value": _SWITCH[value.lower()]}


Parser = Callable[[str], dict[str, Any]]

#: Annotation name -> (InjectionConfig field it sets, parser). Namespaces and pods accept the same names.
OVERRIDE_ANNOTATIONS: dict[str, tuple[str, Parser]] = {
    "wandb.ai/project": ("project", _parse_name),
    "wandb.ai/entity": ("entity", _parse_name),
    "wandb.ai/tags": ("tags", _parse_tags),
    "wandb.ai/api-key-secret": ("api_key_secret", _parse_secret),
    "wandb.ai/base-url": ("base_url", _parse_url),
    "wandb.ai/kubeflow-url": ("kubeflow_url", _parse_url),
    "wandb.ai/init-timeout": ("init_timeout_seconds", _parse_timeout),
    "wandb.ai/shim": ("shim_enabled", _parse_switch),
    "wandb.ai/pythonpath": ("image_pythonpath", _parse_paths),
    "wandb.ai/run-link": ("run_link", _parse_switch),
}


def base_config(settings: Settings) -> InjectionConfig:
    return InjectionConfig(
        api_key_secret_name=settings.api_key_secret_name,
        api_key_secret_key=settings.api_key_secret_key,
        base_url=settings.base_url.rstrip("/"),
        project=settings.project,
        entity=settings.entity,
        tags=tuple(settings.tags),
        kubeflow_url=settings.kubeflow_url.rstrip("/") if settings.kubeflow_url else None,
        init_timeout_seconds=settings.init_timeout_seconds,
        shim_enabled=settings.shim_enabled,
        run_link=settings.run_link_in_logs,
    )


def apply_annotations(
    config: InjectionConfig, found: Mapping[str, str], where: str, locked: frozenset[str] = frozenset()
) -> InjectionConfig:
    """Layer the `wandb.ai/*` annotations of a namespace or pod over `config`; bad values become warnings.

    `locked` holds annotation names the admin reserved for the server settings: they are ignored here.
    """
    changes: dict[str, Any] = {}
    warnings = list(config.warnings)
    for name, (target, parse) in OVERRIDE_ANNOTATIONS.items():
        if name not in found:
            continue
        if name in locked:
            warnings.append(f"wandb-kfp-webhook: ignored annotation {name} on {where}: locked by the server settings")
            continue
        try:
            parsed = parse(str(found[name]).strip())
        except AnnotationError as problem:
            warnings.append(f"wandb-kfp-webhook: ignored annotation {name} on {where}: {problem}")
            continue
        except ValueError:
            warnings.append(f"wandb-kfp-webhook: ignored annotation {name} on {where}: not a usable value")
            continue
        if target == "api_key_secret":
            changes["api_key_secret_name"] = parsed["name"]
            changes["api_key_secret_key"] = parsed["key"] or config.api_key_secret_key
        else:
            changes[target] = parsed["value"]
    return replace(config, warnings=tuple(warnings), **changes)


def resolve(
    settings: Settings,
    namespace_annotations: Mapping[str, str],
    pod_annotations: Mapping[str, str],
    namespace: str,
) -> InjectionConfig:
    """Defaults and settings, then the namespace's annotations, then the pod's (minus what is locked)."""
    locked = settings.locked_annotation_names()
    config = apply_annotations(base_config(settings), namespace_annotations, f"namespace {namespace}", locked)
    return apply_annotations(config, pod_annotations, "the pod", locked | settings.pod_locked_annotation_names())


PIPELINE_PATTERN = re.compile(r"^[A-Za-z0-9_.*?\[\]!-]{1,253}$")


def pipeline_patterns(
    settings: Settings, namespace_annotations: Mapping[str, str], namespace: str
) -> tuple[list[str], list[str]]:
    """The pipeline-name glob patterns that opt a pod in, and warnings for ignored ones."""
    patterns = list(settings.pipelines)
    warnings: list[str] = []
    raw = namespace_annotations.get(PIPELINES_ANNOTATION)
    if raw is not None:
        for pattern in (part.strip() for part in str(raw).split(",")):
            if PIPELINE_PATTERN.match(pattern):
                patterns.append(pattern)
            elif pattern:
                warnings.append(
                    f"wandb-kfp-webhook: ignored a pattern in annotation {PIPELINES_ANNOTATION} on namespace "
                    f"{namespace}: patterns may hold letters, digits, - _ . and the glob characters * ? [ ] !"
                )
    return patterns, warnings


@dataclass(frozen=True)
class NamespaceInfo:
    """The labels and annotations of a namespace, as the cache holds them."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
