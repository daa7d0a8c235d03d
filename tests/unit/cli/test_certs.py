"""`wandb-kfp-webhook certs generate|sync`: flags, exit codes, one-line errors.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from cryptography import x509

from tests.unit.cli.run import cli
from webhook.certificates import checks, rotation
from webhook.certificates.rotation import Material, Policy, plan
from webhook.cli import certs as certs_cli

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


def _webhook_config(*bundles: bytes) -> SimpleNamespace:
    hooks = [
        SimpleNamespace(name=f"h{i}", client_config=SimpleNamespace(ca_bundle=base64.b64encode(b).decode() or None))
        for i, b in enumerate(bundles)
    ]
    return SimpleNamespace(webhooks=hooks)


def test_bad_durations_are_refused_before_any_cluster_call(capsys: pytest.CaptureFixture[str]) -> None:
    code = certs_cli.sync_main(
        [
            "--namespace",
            "n",
            "--secret",
            "s",
            "--webhook-config",
            "w",
            "--service",
            "svc",
            "--out",
            "/nonexistent",
            "--once",
            "--leaf-valid-days",
            "10",
            "--leaf-renew-before-days",
            "30",
        ]
    )
    assert code == 2
    assert "--leaf-renew-before-days" in capsys.readouterr().err


def test_certs_generate_writes_ecdsa_ca_and_serving_cert_with_sans(tmp_path):
    result = cli(
        "certs", "generate", "--dns", "wandb-kfp-webhook.wandb.svc", "--ip", "127.0.0.1", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    leaf = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["wandb-kfp-webhook.wandb.svc"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert leaf.public_key().curve.name == "secp256r1"
    assert (tmp_path / "tls.key").stat().st_mode & 0o777 == 0o600


