"""`wandb-kfp-webhook preview`: what the webhook would do to a Pod or an AdmissionReview, offline.

Reads YAML or JSON (`-` for stdin), runs the same pure `admission.review.evaluate` the server runs, and
prints the mutated pod, a diff or the AdmissionReview answer. Exit 0 mutated, 3 not selected, 2 bad input.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from webhook.admission import config as cfg
from webhook.cli.errors import InputError

EXIT_MUTATED = 0
EXIT_NOT_SELECTED = 3


def _key_values(pairs: list[str], what: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{what} must be KEY=VALUE, got {pair!r}")
        found[key] = value
    return found


def _read_document(source: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as problem:
        raise InputError(f"cannot read {source}: {problem.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as problem:
        raise InputError(f"{source} is neither YAML nor JSON: {str(problem).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise InputError(f"{source} must hold one Pod or AdmissionReview object")
    return document


def _pod_and_namespace(document: dict[str, Any], namespace: str | None) -> tuple[dict[str, Any], str, str]:
    """The Pod, its namespace and a request uid, from a Pod or an AdmissionReview."""
    if document.get("kind") == "AdmissionReview":
        request = document.get("request") or {}
        if not isinstance(request, dict):
            raise InputError("the AdmissionReview has no request object")
        pod = request.get("object")
        if not isinstance(pod, dict) or pod.get("kind", "Pod") != "Pod":
            raise InputError("the AdmissionReview does not hold a Pod in request.object")
        ns = namespace or request.get("namespace") or _namespace_of(pod) or "default"
        return pod, str(ns), str(request.get("uid") or "preview")
    if document.get("kind") != "Pod":
        raise InputError(f"expected kind Pod or AdmissionReview, got {document.get('kind')!r}")
    ns = namespace or _namespace_of(document) or "default"
    return document, str(ns), "preview"


def _namespace_of(pod: dict[str, Any]) -> Any:
    metadata = pod.get("metadata")
    return metadata.get("namespace") if isinstance(metadata, dict) else None


def _checked_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod, when it is shaped as the apiserver would send it; else one line saying where it is not."""
    from webhook.admission.podshape import pod_shape_problem

    problem = pod_shape_problem(pod)
    if problem is not None:
        raise InputError(f"not a valid Pod: {problem}")
    return pod


def cmd_preview(args: argparse.Namespace) -> int:
    from webhook.admission.patch import Injection
    from webhook.admission.review import evaluate, response_for

    settings = cfg.load_settings(args.config)
    document = _read_document(args.file)
    pod, namespace, uid = _pod_and_namespace(document, args.namespace)
    assumed = not args.no_namespace_labels and not args.namespace_label
    if args.no_namespace_labels:
        ns_labels: dict[str, str] = {}
    elif args.namespace_label:
        ns_labels = _key_values(args.namespace_label, "--namespace-label")
    else:
        ns_labels = {cfg.INJECT_LABEL: cfg.NAMESPACE_INJECT_VALUE}
    info = cfg.NamespaceInfo(
        labels=ns_labels, annotations=_key_values(args.namespace_annotation, "--namespace-annotation")
    )
    pod = _checked_pod(pod)
    if assumed:
        print(
            f"preview: assuming namespace {namespace} is labelled {cfg.INJECT_LABEL}={cfg.NAMESPACE_INJECT_VALUE}",
            file=sys.stderr,
        )
    evaluation = evaluate(pod, namespace, info, settings, uid)
    for warning in evaluation.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    injection: Injection | None = evaluation.injection
    if injection is None:
        print(f"not selected: {evaluation.decision.reason}", file=sys.stderr)
        return EXIT_NOT_SELECTED
    mutated = jsonpatch.apply_patch(pod, injection.operations)
    if args.review:
        print(json.dumps(response_for(uid, evaluation, []).to_wire(), indent=2))
    elif args.diff:
        before = yaml.safe_dump(pod, sort_keys=False).splitlines(keepends=True)
        after = yaml.safe_dump(mutated, sort_keys=False).splitlines(keepends=True)
        sys.stdout.writelines(difflib.unified_diff(before, after, "pod", "pod (mutated)"))
    else:
        sys.stdout.write(yaml.safe_dump(mutated, sort_keys=False))
    print(
        f"injected: kind={injection.kind} run-id={injection.run_id} shim={'yes' if injection.with_shim else 'no'}",
        file=sys.stderr,
    )
    return EXIT_MUTATED
