"""What the self-managed Secret should hold now: a pure plan from what it holds, the policy and the clock.

The Secret is the single source of truth every replica reads (see `sync`). Trust is never broken by a
rotation:
- a renewed leaf is signed by the CA the bundle already holds, so old and new leaves are both trusted;
- a new CA first joins the bundle next to the old one (Secret, then the webhook configuration), and
  leaves are re-signed by it only once every webhook has carried it for `trust_grace` (time for every
  apiserver to see the change); the old CA stays in the bundle until it expires.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509

from webhook.certificates import generate
from webhook.certificates.checks import (
    describe,
    fingerprint,
    has_sans,
    is_ca,
    key_matches_cert,
    needs_renewal,
    pem,
    signed_by,
    split_pem_certificates,
    utcnow,
)

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


def _issued_at(cert: x509.Certificate) -> datetime:
    """When `generate` issued it (it back-dates notBefore by a fixed margin)."""
    return cert.not_valid_before_utc + generate.CLOCK_SKEW_MARGIN


def leaf_is_served_safely(
    material: Material, trusted: Sequence[x509.Certificate], policy: Policy, now: datetime
) -> bool:
    """The current leaf may stay for now: its key matches, its SANs are right, it is inside its
    validity, and one of the `trusted` CAs signed it."""
    if not material.tls_cert or not key_matches_cert(material.tls_cert, material.tls_key):
        return False
    if needs_renewal(material.tls_cert, timedelta(0), now=now):
        return False
    if not has_sans(material.tls_cert, policy.dns_names, policy.ip_addresses):
        return False
    leaf = x509.load_pem_x509_certificate(material.tls_cert)
    return any(signed_by(leaf, ca) for ca in trusted)


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
    checked_at = now or utcnow()
    changes: list[str] = []
    ca_cert, ca_key = current.ca_cert, current.ca_key
    if not generate.ca_is_reusable(ca_cert, ca_key, policy.ca_renew_before, now=checked_at):
        if ca_cert and not needs_renewal(ca_cert, timedelta(0), now=checked_at):
            changes.append(f"CA {describe(ca_cert)} is due for rotation: new CA added next to it")
        else:
            changes.append("no usable CA: generated one")
        # X.509 caps a CN at 64 characters; the timestamp tells rotated CAs apart in a bundle.
        name = f"{policy.ca_common_name[:48]} {checked_at:%Y%m%d%H%M%S}"
        ca_cert, ca_key = generate.generate_ca(name, valid_days=policy.ca_valid_days, now=checked_at)
    active_ca = x509.load_pem_x509_certificate(ca_cert)
    # The bundle: the active CA first, then every other CA that is still valid (the overlap).
    bundle_certs = [active_ca]
    for candidate in split_pem_certificates(current.bundle + b"\n" + current.ca_cert):
        if (
            is_ca(candidate)
            and candidate.not_valid_after_utc > checked_at
            and fingerprint(candidate) not in {fingerprint(c) for c in bundle_certs}
        ):
            bundle_certs.append(candidate)
    bundle = b"".join(pem(c) for c in bundle_certs)
    if bundle != current.bundle:
        changes.append(f"CA bundle now holds {len(bundle_certs)} CA(s)")

    tls_cert, tls_key = current.tls_cert, current.tls_key
    deferred = False
    if not generate.serving_cert_is_reusable(
        tls_cert, tls_key, ca_cert, policy.dns_names, policy.ip_addresses, policy.leaf_renew_before, now=checked_at
    ):
        active_trusted = trusted_fingerprints is not None and fingerprint(active_ca) in trusted_fingerprints
        settled = checked_at - _issued_at(active_ca) >= policy.trust_grace
        keep_old = leaf_is_served_safely(current, bundle_certs[1:], policy, checked_at)
        if keep_old and not (active_trusted and settled):
            deferred = True
            changes.append("serving certificate kept until every webhook trusts the new CA")
        else:
            tls_cert, tls_key = generate.generate_serving_cert(
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
