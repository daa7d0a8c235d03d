"""Render the Helm chart with the pinned helm binary, and read the result as plain objects.

Shared by the chart tests (helm lint/template) and the end-to-end test that applies the rendered
manifests to a real kube-apiserver.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.binaries import KUBERNETES_VERSION

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "wandb-kfp-webhook"
VALUES_DIR = Path(__file__).resolve().parent / "values"
RELEASE = "wkw"
NAMESPACE = "wandb-system"
#: Every named values set (tests/chart/values/<name>.yaml); "default" means the chart's own values.
VALUE_SETS = ("default", *sorted(path.stem for path in VALUES_DIR.glob("*.yaml")))


class HelmFailed(AssertionError):
    """helm exited non-zero; the message carries its stderr."""


@dataclass(frozen=True)
class Rendered:
    """The objects of one `helm template`, with lookups by kind and name."""

    objects: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [obj for obj in self.of_kind(kind) if name is None or obj["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    @property
    def kinds(self) -> list[str]:
        return sorted(obj["kind"] for obj in self.objects)

    def to_yaml(self, skip_kinds: Sequence[str] = ()) -> str:
        return yaml.safe_dump_all([obj for obj in self.objects if obj["kind"] not in skip_kinds], sort_keys=False)


def values_files(value_set: str) -> list[Path]:
    return [] if value_set == "default" else [VALUES_DIR / f"{value_set}.yaml"]


def run_helm(helm: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, check=False, timeout=300, env=env)
    if result.returncode != 0:
        raise HelmFailed(f"helm {' '.join(args)} exited {result.returncode}\n{result.stderr}{result.stdout}")
    return result


def template(
    helm: Path,
    value_set: str = "default",
    *,
    set_values: Sequence[str] = (),
    namespace: str = NAMESPACE,
    release: str = RELEASE,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Rendered:
    """`helm template` for the Kubernetes version the e2e apiserver runs."""
    args = ["template", release, str(CHART_DIR), "--namespace", namespace, "--kube-version", KUBERNETES_VERSION]
    for path in values_files(value_set):
        args += ["--values", str(path)]
    for pair in set_values:
        args += ["--set", pair]
    result = run_helm(helm, *args, *extra_args, env=env)
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return Rendered(objects)


def lint(helm: Path, value_set: str = "default") -> str:
    args = ["lint", str(CHART_DIR), "--strict", "--namespace", NAMESPACE, "--kube-version", KUBERNETES_VERSION]
    for path in values_files(value_set):
        args += ["--values", str(path)]
    return run_helm(helm, *args).stdout
