"""Is `request.object` shaped like a Pod where the webhook reads and writes it? Pure, and fast.

An apiserver always sends a well-typed Pod. Anything else came from a client that is not one, and is a
malformed AdmissionReview: it gets a 400 naming the first wrong field, before any decision is made, so
`internal_errors_total` counts the webhook's own bugs and nothing a caller can send. Only the paths the
webhook touches are checked (a full Pod schema would cost more than the review itself).
"""

from __future__ import annotations

from typing import Any

_CONTAINER_LISTS = ("containers", "initContainers")


_NAMES: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}


def _kind(value: Any) -> str:
    return _NAMES.get(type(value), type(value).__name__)


class _Problem(Exception):
    pass


def _expect(value: Any, kind: type, where: str, required: bool = False) -> Any:
    if value is None and not required:
        return None
    if not isinstance(value, kind):
        wanted = _NAMES[kind]
        raise _Problem(f"{where} must be {wanted}, not {_kind(value) if value is not None else 'missing'}")
    return value


def _string_map(value: Any, where: str) -> None:
    for key, item in (_expect(value, dict, where) or {}).items():
        _expect(item, str, f"{where}[{key[:64]!r}]", required=True)


def _objects(value: Any, where: str) -> list[dict[str, Any]]:
    items = _expect(value, list, where) or []
    for position, item in enumerate(items):
        _expect(item, dict, f"{where}[{position}]", required=True)
    return items


def _container(container: dict[str, Any], where: str) -> None:
    _expect(container.get("name"), str, f"{where}.name")
    _expect(container.get("image"), str, f"{where}.image")
    for field in ("command", "args"):
        for position, word in enumerate(_expect(container.get(field), list, f"{where}.{field}") or []):
            _expect(word, str, f"{where}.{field}[{position}]", required=True)
    for position, variable in enumerate(_objects(container.get("env"), f"{where}.env")):
        _expect(variable.get("name"), str, f"{where}.env[{position}].name", required=True)
        _expect(variable.get("value"), str, f"{where}.env[{position}].value")
        _expect(variable.get("valueFrom"), dict, f"{where}.env[{position}].valueFrom")
    _objects(container.get("envFrom"), f"{where}.envFrom")
    for position, mount in enumerate(_objects(container.get("volumeMounts"), f"{where}.volumeMounts")):
        _expect(mount.get("name"), str, f"{where}.volumeMounts[{position}].name")
        _expect(mount.get("mountPath"), str, f"{where}.volumeMounts[{position}].mountPath")


def _check(pod: Any) -> None:
    _expect(pod, dict, "object", required=True)
    metadata = _expect(pod.get("metadata"), dict, "metadata", required=True)
    for field in ("name", "generateName", "namespace", "uid"):
        _expect(metadata.get(field), str, f"metadata.{field}")
    _string_map(metadata.get("labels"), "metadata.labels")
    _string_map(metadata.get("annotations"), "metadata.annotations")
    for position, owner in enumerate(_objects(metadata.get("ownerReferences"), "metadata.ownerReferences")):
        _expect(owner.get("uid"), str, f"metadata.ownerReferences[{position}].uid")
    spec = _expect(pod.get("spec"), dict, "spec", required=True)
    for field in _CONTAINER_LISTS:
        for position, container in enumerate(_objects(spec.get(field), f"spec.{field}")):
            _container(container, f"spec.{field}[{position}]")
    for position, volume in enumerate(_objects(spec.get("volumes"), "spec.volumes")):
        _expect(volume.get("name"), str, f"spec.volumes[{position}].name")


def pod_shape_problem(pod: Any) -> str | None:
    """None for a well-shaped pod, else one line naming the first wrong field (never its value)."""
    try:
        _check(pod)
    except _Problem as problem:
        return str(problem)
    return None
