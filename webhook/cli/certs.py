"""`wandb-kfp-webhook certs generate|sync`: write dev certificates, or run the self-managed sync."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from webhook.certificates import rotation
from webhook.certificates.rotation import Policy
from webhook.cli.errors import InputError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def cmd_generate(args: argparse.Namespace) -> int:
    from webhook.certificates.generate import write_dev_certs

    if not args.dns and not args.ip:
        raise InputError("certs generate needs at least one --dns or --ip")
    written = write_dev_certs(args.out, dns=args.dns, ips=args.ip)
    print(f"{'wrote' if written.regenerated else 'kept valid'} CA {written.ca_cert} and serving cert {written.cert}")
    return 0


def build_sync_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wandb-kfp-webhook certs sync",
        description="Keep the webhook's CA and serving certificate in a Secret, its files and caBundle current.",
    )
    parser.add_argument("--namespace", required=True, help="namespace of the Secret and the Service")
    parser.add_argument("--secret", required=True, help="Secret holding CA, bundle and serving pair")
    parser.add_argument("--webhook-config", required=True, help="MutatingWebhookConfiguration to set caBundle on")
    parser.add_argument("--service", required=True, help="Service name: the serving certificate's DNS SANs")
    parser.add_argument("--out", type=Path, required=True, help="directory for tls.crt and tls.key")
    parser.add_argument("--once", action="store_true", help="one pass, then exit (the init container)")
    parser.add_argument(
        "--interval", type=float, default=rotation.DEFAULT_INTERVAL_SECONDS, help="seconds between passes"
    )
    parser.add_argument("--cluster-domain", default=rotation.DEFAULT_CLUSTER_DOMAIN)
    parser.add_argument("--dns", action="append", default=[], metavar="NAME", help="extra DNS SAN (repeatable)")
    parser.add_argument("--ip", action="append", default=[], metavar="ADDRESS", help="extra IP SAN (repeatable)")
    parser.add_argument("--leaf-valid-days", type=int, default=rotation.DEFAULT_LEAF_VALID_DAYS)
    parser.add_argument("--leaf-renew-before-days", type=float, default=rotation.DEFAULT_LEAF_RENEW_BEFORE_DAYS)
    parser.add_argument("--ca-valid-days", type=int, default=rotation.DEFAULT_CA_VALID_DAYS)
    parser.add_argument("--ca-renew-before-days", type=float, default=rotation.DEFAULT_CA_RENEW_BEFORE_DAYS)
    parser.add_argument(
        "--trust-grace",
        type=float,
        default=rotation.DEFAULT_TRUST_GRACE_SECONDS,
        help="seconds a new CA must be in every caBundle before leaves are signed by it",
    )
    parser.add_argument("--kubeconfig", type=Path, help="default: in-cluster, else $KUBECONFIG or ~/.kube/config")
    parser.add_argument("--log-level", default=os.environ.get("WANDB_KFP_WEBHOOK_LOG_LEVEL", "INFO"))
    return parser


def policy_from_args(args: argparse.Namespace) -> Policy:
    if args.leaf_renew_before_days >= args.leaf_valid_days:
        raise ValueError("--leaf-renew-before-days must be shorter than --leaf-valid-days")
    if args.ca_renew_before_days >= args.ca_valid_days:
        raise ValueError("--ca-renew-before-days must be shorter than --ca-valid-days")
    return Policy(
        dns_names=(*rotation.service_dns_names(args.service, args.namespace, args.cluster_domain), *args.dns),
        ip_addresses=tuple(args.ip),
        leaf_valid_days=args.leaf_valid_days,
        leaf_renew_before=timedelta(days=args.leaf_renew_before_days),
        ca_valid_days=args.ca_valid_days,
        ca_renew_before=timedelta(days=args.ca_renew_before_days),
        trust_grace=timedelta(seconds=args.trust_grace),
        ca_common_name=f"{args.service} CA",
    )


def sync_main(argv: Sequence[str] | None = None) -> int:
    """Entry point for the words after `wandb-kfp-webhook certs sync`."""
    args = build_sync_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from webhook import kube, logs
    from webhook.certificates.sync import CertSyncer, run_forever, safe_reason

    logs.configure(str(args.log_level))
    try:
        policy = policy_from_args(args)
    except ValueError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    api_client = kube.api_client(args.kubeconfig)
    if api_client is None:
        log.error("certificate sync failed: no Kubernetes API access (in-cluster or kubeconfig)")
        return EXIT_FAILED
    syncer = CertSyncer(
        api_client,
        namespace=args.namespace,
        secret_name=args.secret,
        webhook_config_name=args.webhook_config,
        out_dir=args.out,
        policy=policy,
    )
    if args.once:
        try:
            syncer.sync_once()
        except Exception as error:  # noqa: BLE001 - one line, no traceback holding request bodies
            log.error("certificate sync failed: %s", safe_reason(error))
            return EXIT_FAILED
        return EXIT_OK
    run_forever(syncer, args.interval)
    return EXIT_OK
