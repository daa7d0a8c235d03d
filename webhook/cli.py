"""`wandb-kfp-webhook`: serve, preview a pod, generate certificates, install the shim.

The I/O edge of the package: it reads files and flags, and hands pure work to `admission`, `certs` and
`webhook.shim.install`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import jsonpatch
import yaml
from pydantic import ValidationError

from webhook import config as cfg

EXIT_MUTATED = 0
EXIT_BAD_INPUT = 2
EXIT_NOT_SELECTED = 3
DEV_CERTS_DIR = Path("certs")


class InputError(Exception):
    """Input the user must fix; printed as one line, exit code 2."""


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
    from webhook.podshape import pod_shape_problem

    problem = pod_shape_problem(pod)
    if problem is not None:
        raise InputError(f"not a valid Pod: {problem}")
    return pod


def cmd_preview(args: argparse.Namespace) -> int:
    from webhook.admission import evaluate
    from webhook.patch import Injection

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
        from webhook.admission import response_for

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


def cmd_serve(args: argparse.Namespace) -> int:
    import functools

    from webhook import certs, namespaces, serving

    if args.dev:
        args.host = args.host or "127.0.0.1"
        if args.tls_cert is None:
            written = certs.write_dev_certs(DEV_CERTS_DIR, dns=["localhost"], ips=["127.0.0.1"])
            args.tls_cert, args.tls_key = written.cert, written.key
            print(
                f"{'wrote' if written.regenerated else 'reusing'} dev certificates in {DEV_CERTS_DIR}/",
                flush=True,
            )
    flags = {
        "host": args.host,
        "port": args.port,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "workers": args.workers,
    }
    settings = cfg.load_settings(args.config, **{name: value for name, value in flags.items() if value is not None})
    if settings.watch_namespaces and namespaces.connect() is None:
        logging.getLogger("webhook.namespaces").warning(namespaces.NO_CLUSTER_MESSAGE)
        settings = settings.model_copy(update={"watch_namespaces": False})
    if settings.tls_cert is None or settings.tls_key is None:
        raise InputError("serve needs --tls-cert and --tls-key (or --dev to generate localhost certificates)")
    metrics_dir = Path(tempfile.mkdtemp(prefix="wandb-kfp-webhook-metrics-"))
    # prometheus_client chooses multiprocess mode when its metrics are created, so this comes before the
    # app (and its metrics module) is imported.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from webhook.app import create_app

    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    if args.dev:  # a person at a terminal: say how to try it
        print(
            f"wandb-kfp-webhook listening on https://{shown_host}:{settings.port}\n"
            f"  try: curl --cacert {DEV_CERTS_DIR / 'ca.crt'} https://{shown_host}:{settings.port}/healthz\n"
            f"       wandb-kfp-webhook preview tests/fixtures/pods/<pod>.yaml",
            flush=True,
        )
    else:  # a pod: one JSON log line like every other
        logging.getLogger("webhook.cli").info("serving", extra={"host": settings.host, "port": settings.port})
    try:
        # Each worker builds its app from this settings object after the fork (its own namespace watch).
        serving.serve(
            functools.partial(create_app, settings),
            host=settings.host,
            port=settings.port,
            cert_file=str(settings.tls_cert),
            key_file=str(settings.tls_key),
            workers=settings.workers,
            request_timeout_s=settings.request_timeout_seconds,
            max_connections=settings.max_connections,
            log_level=logging.getLevelName(logging.getLogger().level).lower(),
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def cmd_certs_generate(args: argparse.Namespace) -> int:
    from webhook import certs

    if not args.dns and not args.ip:
        raise InputError("certs generate needs at least one --dns or --ip")
    written = certs.write_dev_certs(args.out, dns=args.dns, ips=args.ip)
    print(f"{'wrote' if written.regenerated else 'kept valid'} CA {written.ca_cert} and serving cert {written.cert}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wandb-kfp-webhook", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default=os.environ.get("WANDB_KFP_WEBHOOK_LOG_LEVEL", "INFO"))
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the admission webhook over HTTPS")
    serve.add_argument("--config", type=Path, help="YAML settings file (env WANDB_KFP_WEBHOOK_* wins over it)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--tls-cert", type=Path)
    serve.add_argument("--tls-key", type=Path)
    serve.add_argument("--workers", type=int)
    serve.add_argument(
        "--dev",
        action="store_true",
        help="embedded defaults: 127.0.0.1:8443 with a self-signed CA and cert written into ./certs",
    )
    serve.set_defaults(handler=cmd_serve)

    preview = commands.add_parser("preview", help="show what the webhook would do to a Pod or AdmissionReview")
    preview.add_argument("file", help="YAML or JSON file, or - for stdin")
    preview.add_argument("--namespace", help="namespace to assume (default: the object's, else default)")
    preview.add_argument(
        "--namespace-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"the namespace's labels (default: {cfg.INJECT_LABEL}={cfg.NAMESPACE_INJECT_VALUE})",
    )
    preview.add_argument("--no-namespace-labels", action="store_true", help="the namespace has no labels")
    preview.add_argument("--namespace-annotation", action="append", default=[], metavar="KEY=VALUE")
    preview.add_argument("--config", type=Path, help="YAML settings file, as for serve")
    output = preview.add_mutually_exclusive_group()
    output.add_argument("--review", action="store_true", help="print the AdmissionReview response")
    output.add_argument("--diff", action="store_true", help="print a unified diff of the pod")
    preview.set_defaults(handler=cmd_preview)

    certs_parser = commands.add_parser("certs", help="certificate tooling")
    certs_commands = certs_parser.add_subparsers(dest="certs_command", required=True)
    generate = certs_commands.add_parser("generate", help="write a CA and a serving certificate (ECDSA P-256)")
    generate.add_argument("--dns", action="append", default=[], metavar="NAME", help="DNS SAN (repeatable)")
    generate.add_argument("--ip", action="append", default=[], metavar="ADDRESS", help="IP SAN (repeatable)")
    generate.add_argument("--out", type=Path, required=True)
    generate.set_defaults(handler=cmd_certs_generate)
    certs_commands.add_parser(
        "sync",
        add_help=False,
        help="self-managed mode: keep the serving certificate in a Secret, on disk and in caBundle "
        "(wandb-kfp-webhook certs sync --help)",
    )

    shim = commands.add_parser("shim", help="install the runtime shim (what the init container runs)", add_help=False)
    shim.add_argument("shim_args", nargs=argparse.REMAINDER)
    shim.set_defaults(handler=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["shim"]:
        from webhook.shim import install  # stdlib only: keeps the init container fast

        return int(install.main(argv[1:]))
    if argv[:2] == ["certs", "sync"]:
        from webhook import certsync

        return int(certsync.main(argv[2:]))
    args = build_parser().parse_args(argv)
    from webhook import logs

    logs.configure(args.log_level)
    try:
        return int(args.handler(args))
    except InputError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValidationError as problem:
        details = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in problem.errors())
        print(f"error: invalid settings: {details}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
