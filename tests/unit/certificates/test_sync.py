"""The certificate sync's local side: serving files written only on change, and which CAs every
webhook trusts. The cluster side (Secret writes, races, caBundle patching) is in tests/e2e/test_certsync.py.
"""

from __future__ import annotations

import base64
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509

from webhook.certificates import checks, generate, rotation, sync
from webhook.certificates.rotation import Material, Policy, plan

T0 = datetime(2031, 3, 1, 8, 0, tzinfo=timezone.utc)
DNS = rotation.service_dns_names("wandb-kfp-webhook", "wandb-system")
POLICY = Policy(dns_names=DNS, trust_grace=timedelta(seconds=60))


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def bundle_fingerprints(material: Material) -> list[str]:
    return [checks.fingerprint(cert) for cert in checks.split_pem_certificates(material.bundle)]


def fp(pem: bytes) -> str:
    return checks.fingerprint(load(pem))


@pytest.fixture(scope="module")
def fresh() -> Material:
    return plan(Material(), POLICY, trusted_fingerprints=None, now=T0).material


SHORT_CA = Policy(dns_names=DNS, ca_valid_days=200, trust_grace=timedelta(seconds=60))


@pytest.fixture(scope="module")
def old() -> Material:
    return plan(Material(), SHORT_CA, trusted_fingerprints=None, now=T0).material


def test_serving_files_are_written_only_on_change_with_a_private_key_mode(tmp_path: Path, fresh: Material) -> None:
    out = tmp_path / "tls"
    assert sync.write_serving_files(out, fresh)
    assert (out / "tls.crt").read_bytes() == fresh.tls_cert
    assert (out / "tls.key").read_bytes() == fresh.tls_key
    assert stat.S_IMODE((out / "tls.key").stat().st_mode) == 0o600
    assert not sync.write_serving_files(out, fresh)
    assert sorted(p.name for p in out.iterdir()) == ["tls.crt", "tls.key"]


def _webhook_config(*bundles: bytes) -> SimpleNamespace:
    hooks = [
        SimpleNamespace(name=f"h{i}", client_config=SimpleNamespace(ca_bundle=base64.b64encode(b).decode() or None))
        for i, b in enumerate(bundles)
    ]
    return SimpleNamespace(webhooks=hooks)


def test_trusted_cas_are_those_every_webhook_carries(fresh: Material) -> None:
    other_ca = generate.generate_ca("other")[0]
    both = fresh.ca_cert + other_ca
    trusted = sync.CertSyncer.trusted_by_every_webhook(_webhook_config(both, fresh.ca_cert))
    assert trusted == frozenset({fp(fresh.ca_cert)})
    assert sync.CertSyncer.trusted_by_every_webhook(_webhook_config(both, b"")) == frozenset()
    assert sync.CertSyncer.trusted_by_every_webhook(None) is None


