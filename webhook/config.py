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


class ContainerResources(BaseModel):
    """Small explicit resources for the init container that copies the shim."""

    cpu_request: str = "50m"
    cpu_limit: str = "1"
    memory_request: str = "32Mi"
    memory_limit: str = "256Mi"


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
    shim_image_pull_policy: str = "IfNotPresent"
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
    # Who is never touched.
    excluded_namespaces: CommaList = Field(default_factory=lambda: list(SYSTEM_NAMESPACES))
    own_namespace: str | None = None
    # Serving.
    host: str = "0.0.0.0"  # noqa: S104 - a webhook must listen on the pod IP
    port: int = Field(default=8443, ge=1, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    workers: int = Field(default=2, ge=1)
    threads: int = Field(default=4, ge=1)
    watch_namespaces: bool = True

    @field_validator("tags", "pipelines", "excluded_namespaces", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

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
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
_URL = re.compile(r"^https?://[^\s/?#]+(:\d+)?(/[^\s]*)?$")
_SWITCH = {"enabled": True, "true": True, "on": True, "disabled": False, "false": False, "off": False}


def _parse_name(value: str) -> dict[str, Any]:
    if not _NAME.match(value):
        raise ValueError("must be 1-128 characters without / \\ # ? % :")
    return {"value": value}


def _parse_tags(value: str) -> dict[str, Any]:
    tags = tuple(part.strip() for part in value.split(",") if part.strip())
    if not tags or not all(_TAG.match(tag) for tag in tags):
        raise ValueError("must be a comma-separated list of tags of 1-64 characters")
    return {"value": tags}


def _parse_secret(value: str) -> dict[str, Any]:
    name, _, key = value.partition("/")
    if not _SECRET_NAME.match(name) or (key and not _SECRET_KEY.match(key)):
        raise ValueError("must be a Secret name, optionally followed by /<key>")
    return {"name": name, "key": key or None}


def _parse_url(value: str) -> dict[str, Any]:
    if not _URL.match(value):
        raise ValueError("must be an http(s) URL")
    return {"value": value.rstrip("/")}


def _parse_timeout(value: str) -> dict[str, Any]:
    if not value.isdigit() or not 1 <= int(value) <= 600:
        raise ValueError("must be a whole number of seconds from 1 to 600")
    return {"value": int(value)}


_PATHS = re.compile(r"^/[^:\s]*(:/[^:\s]*)*$")


def _parse_paths(value: str) -> dict[str, Any]:
    if not _PATHS.match(value):
        raise ValueError("must be absolute directories separated by ':'")
    return {"value": value}


def _parse_switch(value: str) -> dict[str, Any]:
    if value.lower() not in _SWITCH:
        raise ValueError("must be enabled or disabled")
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


def apply_annotations(config: InjectionConfig, found: Mapping[str, str], where: str) -> InjectionConfig:
    """Layer the `wandb.ai/*` annotations of a namespace or pod over `config`; bad values become warnings."""
    changes: dict[str, Any] = {}
    warnings = list(config.warnings)
    for name, (target, parse) in OVERRIDE_ANNOTATIONS.items():
        if name not in found:
            continue
        try:
            parsed = parse(str(found[name]).strip())
        except ValueError as problem:
            warnings.append(f"wandb-kfp-webhook: ignored annotation {name} on {where}: {problem}")
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
    """Defaults and settings, then the namespace's annotations, then the pod's."""
    config = apply_annotations(base_config(settings), namespace_annotations, f"namespace {namespace}")
    return apply_annotations(config, pod_annotations, "the pod")


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
