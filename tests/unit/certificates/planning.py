"""What the certificate tests share: a fixed clock, the Service's DNS names, policies and readers."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from cryptography import x509

from webhook.certificates import checks, rotation
from webhook.certificates.rotation import Material, Policy, plan

T0 = datetime(2031, 3, 1, 8, 0, tzinfo=timezone.utc)
DNS = rotation.service_dns_names("wandb-kfp-webhook", "wandb-system")
POLICY = Policy(dns_names=DNS, trust_grace=timedelta(seconds=60))
SHORT_CA = Policy(dns_names=DNS, ca_valid_days=200, trust_grace=timedelta(seconds=60))


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def bundle_fingerprints(material: Material) -> list[str]:
    return [checks.fingerprint(cert) for cert in checks.split_pem_certificates(material.bundle)]


def fp(pem: bytes) -> str:
    return checks.fingerprint(load(pem))


def webhook_config(*bundles: bytes) -> SimpleNamespace:
    """A MutatingWebhookConfiguration as the kubernetes client returns it, one webhook per caBundle."""
    hooks = [
        SimpleNamespace(name=f"h{i}", client_config=SimpleNamespace(ca_bundle=base64.b64encode(b).decode() or None))
        for i, b in enumerate(bundles)
    ]
    return SimpleNamespace(webhooks=hooks)


@pytest.fixture(scope="module")
def fresh() -> Material:
    return plan(Material(), POLICY, trusted_fingerprints=None, now=T0).material


@pytest.fixture(scope="module")
def old() -> Material:
    return plan(Material(), SHORT_CA, trusted_fingerprints=None, now=T0).material
