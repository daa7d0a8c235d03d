"""`wandb-kfp-webhook certs generate|sync`: flags, exit codes, one-line errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509

from tests.unit.certificates.planning import T0
from tests.unit.cli.run import cli
from webhook.certificates import checks, generate
from webhook.certificates.rotation import Material, plan
from webhook.cli import certs as certs_cli


def test_bad_durations_are_refused_before_any_cluster_call(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--namespace", "n", "--secret", "s", "--webhook-config", "w", "--service", "svc"]
    args += ["--out", "/nonexistent", "--once", "--leaf-valid-days", "10", "--leaf-renew-before-days", "30"]
    assert certs_cli.sync_main(args) == 2
    assert "--leaf-renew-before-days" in capsys.readouterr().err


def test_certs_generate_writes_ecdsa_ca_and_serving_cert_with_sans(tmp_path) -> None:  # type: ignore[no-untyped-def]
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


def test_longest_kubernetes_names_still_make_valid_certificates() -> None:
    """Service and namespace names may be 63 characters; X.509 caps a CN at 64."""
    longest = "s" * 63
    args = certs_cli.build_sync_parser().parse_args(
        ["--namespace", "n" * 63, "--secret", "x", "--webhook-config", "w", "--service", longest, "--out", "/o"]
    )
    material = plan(Material(), certs_cli.policy_from_args(args), trusted_fingerprints=None, now=T0).material
    assert f"{longest}.{'n' * 63}.svc" in checks.cert_sans(material.tls_cert)[0]
    assert generate.ca_is_reusable(material.ca_cert, material.ca_key, timedelta(0), now=T0)
