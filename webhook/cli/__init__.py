"""`wandb-kfp-webhook`: serve, preview a pod, generate or sync certificates, install the shim.

The I/O edge of the package: it reads files and flags, and hands pure work to `admission`,
`certificates` and `shim`. One module per command; this one only parses and dispatches.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from webhook.cli.errors import EXIT_BAD_INPUT, InputError

# Nothing heavy at module level: `shim install` (every injected pod's init container) starts here.


def _lazy(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """A handler imported only when its command runs (each command pulls in different libraries)."""

    def handler(args: argparse.Namespace) -> int:
        import importlib

        return int(getattr(importlib.import_module(module), function)(args))

    return handler


def build_parser() -> argparse.ArgumentParser:
    from webhook.admission import config as cfg

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
    serve.set_defaults(handler=_lazy("webhook.cli.serve", "cmd_serve"))

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
    preview.set_defaults(handler=_lazy("webhook.cli.preview", "cmd_preview"))

    certs_parser = commands.add_parser("certs", help="certificate tooling")
    certs_commands = certs_parser.add_subparsers(dest="certs_command", required=True)
    generate = certs_commands.add_parser("generate", help="write a CA and a serving certificate (ECDSA P-256)")
    generate.add_argument("--dns", action="append", default=[], metavar="NAME", help="DNS SAN (repeatable)")
    generate.add_argument("--ip", action="append", default=[], metavar="ADDRESS", help="IP SAN (repeatable)")
    generate.add_argument("--out", type=Path, required=True)
    generate.set_defaults(handler=_lazy("webhook.cli.certs", "cmd_generate"))
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
        from webhook.shim_build import install  # stdlib only: keeps the init container fast

        return int(install.main(argv[1:]))
    if argv[:2] == ["certs", "sync"]:
        from webhook.cli.certs import sync_main

        return int(sync_main(argv[2:]))
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

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
