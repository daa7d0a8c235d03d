"""`wandb-kfp-webhook serve`: the admission server over HTTPS (`--dev`: on 127.0.0.1 with local certificates)."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shutil
import tempfile
from pathlib import Path

from webhook.admission import config as cfg
from webhook.cli.errors import InputError

log = logging.getLogger(__name__)

DEV_CERTS_DIR = Path("certs")


def cmd_serve(args: argparse.Namespace) -> int:

    from webhook import kube
    from webhook.certificates.generate import write_dev_certs
    from webhook.server import namespaces
    from webhook.server.runner import serve

    if args.dev:
        args.host = args.host or "127.0.0.1"
        if args.tls_cert is None:
            written = write_dev_certs(DEV_CERTS_DIR, dns=["localhost"], ips=["127.0.0.1"])
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
    if settings.watch_namespaces and kube.api_client() is None:
        log.warning(namespaces.NO_CLUSTER_MESSAGE)
        settings = settings.model_copy(update={"watch_namespaces": False})
    if settings.tls_cert is None or settings.tls_key is None:
        raise InputError("serve needs --tls-cert and --tls-key (or --dev to generate localhost certificates)")
    metrics_dir = Path(tempfile.mkdtemp(prefix="wandb-kfp-webhook-metrics-"))
    # gunicorn forks the workers inside serve() below, so a worker that exits unwinds through this frame
    # too: only this process (the master) may remove the directory every worker still writes to.
    master_pid = os.getpid()
    # prometheus_client chooses multiprocess mode when its metrics are created, so this comes before the
    # app (and its metrics module) is imported.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from webhook.server.app import create_app

    shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    if args.dev:  # a person at a terminal: say how to try it
        print(
            f"wandb-kfp-webhook listening on https://{shown_host}:{settings.port}\n"
            f"  try: curl --cacert {DEV_CERTS_DIR / 'ca.crt'} https://{shown_host}:{settings.port}/healthz\n"
            f"       wandb-kfp-webhook preview tests/fixtures/pods/<pod>.yaml",
            flush=True,
        )
    else:  # a pod: one JSON log line like every other
        log.info("serving", extra={"host": settings.host, "port": settings.port})
    try:
        # Each worker builds its app from this settings object after the fork (its own namespace watch).
        serve(
            functools.partial(create_app, settings),
            host=settings.host,
            port=settings.port,
            cert_file=str(settings.tls_cert),
            key_file=str(settings.tls_key),
            workers=settings.workers,
            request_timeout_s=settings.request_timeout_seconds,
            max_connections=settings.max_connections,
            drain_s=settings.shutdown_drain_seconds,
            log_level=logging.getLevelName(logging.getLogger().level).lower(),
        )
    finally:
        if os.getpid() == master_pid:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
