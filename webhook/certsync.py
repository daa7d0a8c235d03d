"""`wandb-kfp-webhook certs sync`: keep the webhook's own CA and serving certificate in a Secret.

The Secret is the single source of truth every replica reads; the first replica to notice that the
material is missing, invalid or close to expiry generates new material and writes it with optimistic
concurrency (create, or update carrying the resourceVersion it read). A 409 means another replica
won: re-read and use what it wrote. Each replica then writes tls.crt/tls.key atomically into its own
directory (the server reloads them per handshake, see `webhook.serving`) and makes every webhook in
the MutatingWebhookConfiguration trust the CA bundle.

Trust is never broken by a rotation:
- a renewed leaf is signed by the CA the bundle already holds, so old and new leaves are both trusted;
- a new CA first joins the bundle next to the old one (Secret, then the webhook configuration), and
  leaves are re-signed by it only once every webhook has carried it for `trust_grace` (time for every
  apiserver to see the change); the old CA stays in the bundle until it expires.

Nothing here logs key material: only serial numbers, fingerprints and expiry times.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from webhook import certs

log = logging.getLogger("webhook.certsync")

# Secret keys. ca.crt/ca.key sign new leaves; ca-bundle.crt is what the webhook configuration trusts.
CA_CERT_KEY = "ca.crt"
CA_KEY_KEY = "ca.key"
CA_BUNDLE_KEY = "ca-bundle.crt"
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"

DEFAULT_LEAF_VALID_DAYS = 90
DEFAULT_LEAF_RENEW_BEFORE_DAYS = 30
DEFAULT_CA_VALID_DAYS = 3650
DEFAULT_CA_RENEW_BEFORE_DAYS = 180
DEFAULT_TRUST_GRACE_SECONDS = 60
DEFAULT_INTERVAL_SECONDS = 60
DEFAULT_CLUSTER_DOMAIN = "cluster.local"
#: How many times one pass re-reads after losing a write race before giving up until the next pass.
MAX_CONFLICT_RETRIES = 5

EXIT_OK = 0
EXIT_FAILED = 1


@dataclass(frozen=True)
class Policy:
    """What a valid serving setup looks like, and when each certificate is replaced."""

    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...] = ()
    leaf_valid_days: int = DEFAULT_LEAF_VALID_DAYS
    leaf_renew_before: timedelta = timedelta(days=DEFAULT_LEAF_RENEW_BEFORE_DAYS)
    ca_valid_days: int = DEFAULT_CA_VALID_DAYS
    ca_renew_before: timedelta = timedelta(days=DEFAULT_CA_RENEW_BEFORE_DAYS)
    trust_grace: timedelta = timedelta(seconds=DEFAULT_TRUST_GRACE_SECONDS)
    ca_common_name: str = "wandb-kfp-webhook-ca"


@dataclass(frozen=True)
class Material:
    """The PEM contents of the Secret (empty bytes for a missing key)."""

    ca_cert: bytes = b""
    ca_key: bytes = field(default=b"", repr=False)
    bundle: bytes = b""
    tls_cert: bytes = b""
    tls_key: bytes = field(default=b"", repr=False)

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str] | None) -> Material:
        """Decode a Secret's base64 `data`; an undecodable value counts as missing."""
        found = data or {}

        def decoded(key: str) -> bytes:
            try:
                return base64.b64decode(found.get(key) or "", validate=True)
            except ValueError:
                return b""

        return cls(
            ca_cert=decoded(CA_CERT_KEY),
            ca_key=decoded(CA_KEY_KEY),
            bundle=decoded(CA_BUNDLE_KEY),
            tls_cert=decoded(TLS_CERT_KEY),
            tls_key=decoded(TLS_KEY_KEY),
        )

    def to_secret_data(self) -> dict[str, str]:
        pairs = {
            CA_CERT_KEY: self.ca_cert,
            CA_KEY_KEY: self.ca_key,
            CA_BUNDLE_KEY: self.bundle,
            TLS_CERT_KEY: self.tls_cert,
            TLS_KEY_KEY: self.tls_key,
        }
        return {key: base64.b64encode(value).decode("ascii") for key, value in pairs.items()}


@dataclass(frozen=True)
class Plan:
    """The material to store and, for the log, what changed and why."""

    material: Material
    changes: tuple[str, ...]
    #: True when a leaf signed by a new CA is waiting for that CA to be trusted everywhere.
    leaf_deferred: bool = False


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def split_pem_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every parsable certificate in a PEM bundle, in order; garbage is skipped."""
    found: list[x509.Certificate] = []
    marker = b"-----END CERTIFICATE-----"
    for chunk in pem.split(marker):
        if b"-----BEGIN CERTIFICATE-----" not in chunk:
            continue
        try:
            found.append(x509.load_pem_x509_certificate(chunk + marker + b"\n"))
        except ValueError:
            continue
    return found


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate: safe to log, and how bundles are compared."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _issued_at(cert: x509.Certificate) -> datetime:
    """When webhook.certs issued it (it back-dates notBefore by a fixed margin)."""
    return cert.not_valid_before_utc + certs.CLOCK_SKEW_MARGIN


def describe(cert_pem: bytes) -> str:
    """serial, fingerprint prefix and expiry of the first certificate: for logs."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "unreadable certificate"
    return (
        f"serial={cert.serial_number:x} sha256={fingerprint(cert)[:16]} "
        f"expires={cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}"
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _signed_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def leaf_is_served_safely(
    material: Material, trusted: Sequence[x509.Certificate], policy: Policy, now: datetime
) -> bool:
    """The current leaf may stay for now: its key matches, its SANs are right, it is inside its
    validity, and one of the `trusted` CAs signed it."""
    if not material.tls_cert or not certs.key_matches_cert(material.tls_cert, material.tls_key):
        return False
    if certs.needs_renewal(material.tls_cert, timedelta(0), now=now):
        return False
    wanted_dns = frozenset(name.lower() for name in policy.dns_names)
    wanted_ips = frozenset(ipaddress.ip_address(ip) for ip in policy.ip_addresses)
    if certs.cert_sans(material.tls_cert) != (wanted_dns, wanted_ips):
        return False
    leaf = x509.load_pem_x509_certificate(material.tls_cert)
    return any(_signed_by(leaf, ca) for ca in trusted)


def plan(
    current: Material,
    policy: Policy,
    *,
    trusted_fingerprints: frozenset[str] | None,
    now: datetime | None = None,
) -> Plan:
    """Pure decision: which CA, bundle and leaf the Secret should hold now.

    `trusted_fingerprints` are the CAs every webhook of the configuration already trusts (None when the
    configuration cannot be read: then a new CA is never assumed trusted).
    """
    checked_at = now or _utcnow()
    changes: list[str] = []
    ca_cert, ca_key = current.ca_cert, current.ca_key
    if not certs.ca_is_reusable(ca_cert, ca_key, policy.ca_renew_before, now=checked_at):
        if ca_cert and not certs.needs_renewal(ca_cert, timedelta(0), now=checked_at):
            changes.append(f"CA {describe(ca_cert)} is due for rotation: new CA added next to it")
        else:
            changes.append("no usable CA: generated one")
        # X.509 caps a CN at 64 characters; the timestamp tells rotated CAs apart in a bundle.
        name = f"{policy.ca_common_name[:48]} {checked_at:%Y%m%d%H%M%S}"
        ca_cert, ca_key = certs.generate_ca(name, valid_days=policy.ca_valid_days, now=checked_at)
    active_ca = x509.load_pem_x509_certificate(ca_cert)
    # The bundle: the active CA first, then every other CA that is still valid (the overlap).
    bundle_certs = [active_ca]
    for candidate in split_pem_certificates(current.bundle + b"\n" + current.ca_cert):
        if (
            _is_ca(candidate)
            and candidate.not_valid_after_utc > checked_at
            and fingerprint(candidate) not in {fingerprint(c) for c in bundle_certs}
        ):
            bundle_certs.append(candidate)
    bundle = b"".join(_pem(c) for c in bundle_certs)
    if bundle != current.bundle:
        changes.append(f"CA bundle now holds {len(bundle_certs)} CA(s)")

    tls_cert, tls_key = current.tls_cert, current.tls_key
    deferred = False
    if not certs.serving_cert_is_reusable(
        tls_cert, tls_key, ca_cert, policy.dns_names, policy.ip_addresses, policy.leaf_renew_before, now=checked_at
    ):
        active_trusted = trusted_fingerprints is not None and fingerprint(active_ca) in trusted_fingerprints
        settled = checked_at - _issued_at(active_ca) >= policy.trust_grace
        keep_old = leaf_is_served_safely(current, bundle_certs[1:], policy, checked_at)
        if keep_old and not (active_trusted and settled):
            deferred = True
            changes.append("serving certificate kept until every webhook trusts the new CA")
        else:
            tls_cert, tls_key = certs.generate_serving_cert(
                ca_cert,
                ca_key,
                policy.dns_names,
                policy.ip_addresses,
                valid_days=policy.leaf_valid_days,
                now=checked_at,
            )
            changes.append(f"issued serving certificate {describe(tls_cert)}")
    material = Material(ca_cert=ca_cert, ca_key=ca_key, bundle=bundle, tls_cert=tls_cert, tls_key=tls_key)
    if material == current:
        return Plan(current, (), deferred)
    return Plan(material, tuple(changes), deferred)


def service_dns_names(service: str, namespace: str, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> tuple[str, ...]:
    """The names the apiserver may use for the Service (it dials <service>.<namespace>.svc)."""
    names = [service, f"{service}.{namespace}", f"{service}.{namespace}.svc"]
    if cluster_domain:
        names.append(f"{service}.{namespace}.svc.{cluster_domain}")
    return tuple(names)


def write_serving_files(out_dir: Path, material: Material) -> bool:
    """Write tls.key then tls.crt atomically when they differ from what is on disk; True when written.

    The server keeps its current certificate until both files form a matching pair."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / certs.SERVING_CERT_FILE, out_dir / certs.SERVING_KEY_FILE
    on_disk = (
        cert_path.read_bytes() if cert_path.exists() else b"",
        key_path.read_bytes() if key_path.exists() else b"",
    )
    if on_disk == (material.tls_cert, material.tls_key):
        return False
    certs.write_file_atomically(key_path, material.tls_key, 0o600)
    certs.write_file_atomically(cert_path, material.tls_cert, 0o644)
    return True


@dataclass
class Outcome:
    """What one pass did, for logs, exit codes and tests."""

    secret_written: bool = False
    lost_races: int = 0
    files_written: bool = False
    webhooks_patched: int = 0
    webhook_config_found: bool = True
    leaf_deferred: bool = False
    changes: tuple[str, ...] = ()
    material: Material = field(default_factory=Material, repr=False)


class CertSyncer:
    """One replica's view: read the Secret, fix it if needed, mirror it to files and the webhook config."""

    def __init__(
        self,
        api_client: Any,
        *,
        namespace: str,
        secret_name: str,
        webhook_config_name: str,
        out_dir: Path,
        policy: Policy,
    ) -> None:
        from kubernetes import client  # imported here: unit tests of `plan` need no cluster client

        self._core = client.CoreV1Api(api_client)
        self._admission = client.AdmissionregistrationV1Api(api_client)
        self._client_module = client
        self.namespace = namespace
        self.secret_name = secret_name
        self.webhook_config_name = webhook_config_name
        self.out_dir = out_dir
        self.policy = policy

    # -- cluster reads and writes ----------------------------------------------------------------

    def _read_secret(self) -> Any | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._core.read_namespaced_secret(self.secret_name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def _read_webhook_config(self) -> Any | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._admission.read_mutating_webhook_configuration(self.webhook_config_name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    @staticmethod
    def trusted_by_every_webhook(webhook_config: Any | None) -> frozenset[str] | None:
        """Fingerprints of the CAs in every webhook's caBundle (None without a configuration)."""
        if webhook_config is None:
            return None
        common: set[str] | None = None
        for webhook in webhook_config.webhooks or []:
            raw = webhook.client_config.ca_bundle or ""
            try:
                pem = base64.b64decode(raw)
            except ValueError:
                pem = b""
            found = {fingerprint(c) for c in split_pem_certificates(pem)}
            common = found if common is None else common & found
        return frozenset(common or ())

    def _write_secret(self, existing: Any | None, material: Material) -> bool:
        """Create or update (with the resourceVersion read); False when another writer got there first."""
        from kubernetes.client.exceptions import ApiException

        client = self._client_module
        try:
            if existing is None:
                body = client.V1Secret(
                    metadata=client.V1ObjectMeta(
                        name=self.secret_name,
                        namespace=self.namespace,
                        labels={"app.kubernetes.io/managed-by": "wandb-kfp-webhook-certsync"},
                    ),
                    type="Opaque",
                    data=material.to_secret_data(),
                )
                self._core.create_namespaced_secret(self.namespace, body)
            else:
                existing.data = material.to_secret_data()
                self._core.replace_namespaced_secret(self.secret_name, self.namespace, existing)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def _patch_ca_bundle(self, webhook_config: Any, bundle: bytes) -> int:
        """Set caBundle on every webhook that lacks exactly this bundle; returns how many were patched.

        A JSON patch per index, guarded by a `test` of the webhook's name, so a configuration reordered
        in between is refused rather than patched at the wrong place."""
        encoded = base64.b64encode(bundle).decode("ascii")
        operations: list[dict[str, Any]] = []
        for index, webhook in enumerate(webhook_config.webhooks or []):
            if webhook.client_config.ca_bundle == encoded:
                continue
            operations.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.name})
            operations.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded})
        if operations:
            self._admission.patch_mutating_webhook_configuration(self.webhook_config_name, operations)
        return len(operations) // 2

    # -- one pass ----------------------------------------------------------------------------------

    def sync_once(self, now: datetime | None = None) -> Outcome:
        """Bring the Secret, the files and the webhook configuration in line (one pass)."""
        outcome = Outcome()
        for _attempt in range(MAX_CONFLICT_RETRIES + 1):
            secret = self._read_secret()
            webhook_config = self._read_webhook_config()
            current = Material.from_secret_data(secret.data if secret is not None else None)
            decided = plan(
                current, self.policy, trusted_fingerprints=self.trusted_by_every_webhook(webhook_config), now=now
            )
            outcome.webhook_config_found = webhook_config is not None
            outcome.leaf_deferred = decided.leaf_deferred
            if decided.material == current:
                break
            if self._write_secret(secret, decided.material):
                outcome.secret_written = True
                outcome.changes = decided.changes
                for change in decided.changes:
                    log.info("secret %s/%s: %s", self.namespace, self.secret_name, change)
                break
            outcome.lost_races += 1
            log.info("secret %s/%s was written by another replica first; re-reading", self.namespace, self.secret_name)
        else:
            raise RuntimeError(f"secret {self.namespace}/{self.secret_name} kept changing under us; retrying later")
        material = decided.material
        outcome.material = material
        try:
            if webhook_config is None:
                log.warning(
                    "MutatingWebhookConfiguration %s not found: caBundle not set (retrying next pass)",
                    self.webhook_config_name,
                )
            else:
                outcome.webhooks_patched = self._patch_ca_bundle(webhook_config, material.bundle)
                if outcome.webhooks_patched:
                    log.info(
                        "set caBundle (%d CA) on %d webhook(s) of %s",
                        len(split_pem_certificates(material.bundle)),
                        outcome.webhooks_patched,
                        self.webhook_config_name,
                    )
        finally:
            # Files last (and even when the patch failed): a leaf only ever moves to a CA that every
            # webhook already trusts, so the server may always serve what the Secret holds.
            if write_serving_files(self.out_dir, material):
                outcome.files_written = True
                log.info("wrote serving certificate %s into %s", describe(material.tls_cert), self.out_dir)
        return outcome


# -- command line --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_SECONDS, help="seconds between passes")
    parser.add_argument("--cluster-domain", default=DEFAULT_CLUSTER_DOMAIN)
    parser.add_argument("--dns", action="append", default=[], metavar="NAME", help="extra DNS SAN (repeatable)")
    parser.add_argument("--ip", action="append", default=[], metavar="ADDRESS", help="extra IP SAN (repeatable)")
    parser.add_argument("--leaf-valid-days", type=int, default=DEFAULT_LEAF_VALID_DAYS)
    parser.add_argument("--leaf-renew-before-days", type=float, default=DEFAULT_LEAF_RENEW_BEFORE_DAYS)
    parser.add_argument("--ca-valid-days", type=int, default=DEFAULT_CA_VALID_DAYS)
    parser.add_argument("--ca-renew-before-days", type=float, default=DEFAULT_CA_RENEW_BEFORE_DAYS)
    parser.add_argument(
        "--trust-grace",
        type=float,
        default=DEFAULT_TRUST_GRACE_SECONDS,
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
        dns_names=(*service_dns_names(args.service, args.namespace, args.cluster_domain), *args.dns),
        ip_addresses=tuple(args.ip),
        leaf_valid_days=args.leaf_valid_days,
        leaf_renew_before=timedelta(days=args.leaf_renew_before_days),
        ca_valid_days=args.ca_valid_days,
        ca_renew_before=timedelta(days=args.ca_renew_before_days),
        trust_grace=timedelta(seconds=args.trust_grace),
        ca_common_name=f"{args.service} CA",
    )


def api_client_for(kubeconfig: Path | None) -> Any:
    """In-cluster credentials (the pod's ServiceAccount) unless a kubeconfig is given or found."""
    from kubernetes import client, config

    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    return config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None)  # type: ignore[no-untyped-call]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for the words after `wandb-kfp-webhook certs sync`."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from webhook import logs

    logs.configure(str(args.log_level))
    try:
        policy = policy_from_args(args)
    except ValueError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    syncer = CertSyncer(
        api_client_for(args.kubeconfig),
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
            log.error("certificate sync failed: %s", _safe_reason(error))
            return EXIT_FAILED
        return EXIT_OK
    return run_forever(syncer, args.interval)


def _safe_reason(error: BaseException) -> str:
    """An ApiException carries the response body (which may hold Secret data): keep status and reason."""
    status = getattr(error, "status", None)
    if status is not None:
        return f"API error {status} {getattr(error, 'reason', '')}".strip()
    return f"{type(error).__name__}: {error}"


def run_forever(syncer: CertSyncer, interval_s: float) -> int:
    """Sync every `interval_s` until SIGTERM/SIGINT; a failed pass is logged and retried."""
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopping.is_set():
        try:
            syncer.sync_once()
        except Exception as error:  # noqa: BLE001 - the sidecar keeps going; the next pass retries
            log.error("certificate sync failed, retrying in %.0fs: %s", interval_s, _safe_reason(error))
        stopping.wait(interval_s)
    return EXIT_OK


__all__ = ["CertSyncer", "Material", "Outcome", "Plan", "Policy", "main", "plan"]


if __name__ == "__main__":
    sys.exit(main())
