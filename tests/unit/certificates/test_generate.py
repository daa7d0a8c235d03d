"""Certificates: what the kube-apiserver checks (SANs, chain, EKU, validity) and when files are reused."""

from __future__ import annotations

import ipaddress
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support import x509_facts
from webhook.certificates import checks, generate

NOW = datetime(2030, 1, 15, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return generate.generate_ca("test-ca", valid_days=3650, now=NOW)


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_ca_is_a_p256_ca_that_can_only_sign_certificates(ca: tuple[bytes, bytes]) -> None:
    cert = load(ca[0])
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    public_key = cert.public_key()
    assert constraints.critical and constraints.value.ca
    assert usage.key_cert_sign and usage.crl_sign
    assert isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1"
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)


def test_validity_window_is_backdated_for_clock_skew(ca: tuple[bytes, bytes]) -> None:
    cert_pem, _ = generate.generate_serving_cert(*ca, ["svc.ns.svc"], [], valid_days=30, now=NOW)
    cert = load(cert_pem)
    assert cert.not_valid_before_utc == NOW - generate.CLOCK_SKEW_MARGIN
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)
    assert x509_facts.cert_not_after(cert_pem) == NOW + timedelta(days=30)


def test_serving_cert_has_sans_server_auth_and_is_signed_by_the_ca(ca: tuple[bytes, bytes]) -> None:
    dns_names = ["wandb-kfp-webhook.kubeflow.svc", "wandb-kfp-webhook.kubeflow.svc.cluster.local"]
    cert_pem, key_pem = generate.generate_serving_cert(*ca, dns_names, ["10.0.0.7", "::1"], now=NOW)
    cert = load(cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert san.get_values_for_type(x509.DNSName) == dns_names
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"),
        ipaddress.ip_address("::1"),
    ]
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(load(ca[0]))
    assert checks.key_matches_cert(cert_pem, key_pem)
    assert b"BEGIN PRIVATE KEY" in key_pem


def test_serving_cert_never_outlives_its_ca() -> None:
    short_ca = generate.generate_ca("short", valid_days=10, now=NOW)
    cert_pem, _ = generate.generate_serving_cert(*short_ca, ["a"], [], valid_days=365, now=NOW)
    assert x509_facts.cert_not_after(cert_pem) == x509_facts.cert_not_after(short_ca[0])


def test_serving_cert_needs_a_name(ca: tuple[bytes, bytes]) -> None:
    with pytest.raises(ValueError, match="at least one"):
        generate.generate_serving_cert(*ca, [], [])


def test_every_certificate_gets_its_own_key_and_serial(ca: tuple[bytes, bytes]) -> None:
    first = generate.generate_serving_cert(*ca, ["a"], [], now=NOW)
    second = generate.generate_serving_cert(*ca, ["a"], [], now=NOW)
    assert x509_facts.cert_serial(first[0]) != x509_facts.cert_serial(second[0])
    assert not checks.key_matches_cert(first[0], second[1])
    assert not checks.key_matches_cert(first[0], b"-----BEGIN PRIVATE KEY-----\ntruncated")


@pytest.mark.parametrize(
    ("checked_at", "before", "expected"),
    [
        (NOW, timedelta(days=30), False),
        (NOW + timedelta(days=59), timedelta(days=30), False),
        (NOW + timedelta(days=60), timedelta(days=30), True),
        (NOW + timedelta(days=89), timedelta(0), False),
        (NOW + timedelta(days=91), timedelta(0), True),  # expired
        (NOW - timedelta(hours=2), timedelta(days=30), True),  # not valid yet
    ],
)
def test_needs_renewal(ca: tuple[bytes, bytes], checked_at: datetime, before: timedelta, expected: bool) -> None:
    cert_pem, _ = generate.generate_serving_cert(*ca, ["a"], [], valid_days=90, now=NOW)
    assert checks.needs_renewal(cert_pem, before, now=checked_at) is expected


def test_unreadable_certificate_needs_renewal() -> None:
    assert checks.needs_renewal(b"", timedelta(0))
    assert checks.needs_renewal(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", timedelta(0))


def test_write_dev_certs_creates_pair_with_private_keys(tmp_path: Path) -> None:
    paths = generate.write_dev_certs(tmp_path / "out", dns=["localhost"], ips=["127.0.0.1"])
    assert paths.regenerated
    for key_path in (paths.ca_key, paths.key):
        assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    for cert_path in (paths.ca_cert, paths.cert):
        assert stat.S_IMODE(os.stat(cert_path).st_mode) == 0o644
    cert_pem = paths.cert.read_bytes()
    assert checks.cert_sans(cert_pem) == (
        frozenset({"localhost"}),
        frozenset({ipaddress.ip_address("127.0.0.1")}),
    )
    load(cert_pem).verify_directly_issued_by(load(paths.ca_cert.read_bytes()))
    assert sorted(entry.name for entry in (tmp_path / "out").iterdir()) == [
        "ca.crt",
        "ca.key",
        "tls.crt",
        "tls.key",
    ]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {entry.name: entry.read_bytes() for entry in sorted(directory.iterdir())}


def test_write_dev_certs_reuses_valid_files(tmp_path: Path) -> None:
    generate.write_dev_certs(tmp_path, dns=["localhost"], ips=["127.0.0.1"])
    before = snapshot(tmp_path)
    again = generate.write_dev_certs(tmp_path, dns=["LOCALHOST"], ips=["127.0.0.1"])
    assert not again.regenerated
    assert snapshot(tmp_path) == before


def test_write_dev_certs_reissues_leaf_when_sans_differ_but_keeps_the_ca(tmp_path: Path) -> None:
    generate.write_dev_certs(tmp_path, dns=["localhost"], ips=["127.0.0.1"])
    before = snapshot(tmp_path)
    again = generate.write_dev_certs(tmp_path, dns=["localhost", "webhook.svc"], ips=["127.0.0.1"])
    after = snapshot(tmp_path)
    assert again.regenerated
    assert after["ca.crt"] == before["ca.crt"] and after["ca.key"] == before["ca.key"]
    assert after["tls.crt"] != before["tls.crt"] and after["tls.key"] != before["tls.key"]
    assert checks.cert_sans(after["tls.crt"])[0] == {"localhost", "webhook.svc"}


def test_write_dev_certs_renews_a_leaf_expiring_within_30_days(tmp_path: Path) -> None:
    generate.write_dev_certs(tmp_path, dns=["localhost"], ips=[], serving_valid_days=40, now=NOW)
    before = snapshot(tmp_path)
    kept = generate.write_dev_certs(tmp_path, dns=["localhost"], ips=[], now=NOW + timedelta(days=9))
    assert not kept.regenerated
    renewed = generate.write_dev_certs(tmp_path, dns=["localhost"], ips=[], now=NOW + timedelta(days=11))
    after = snapshot(tmp_path)
    assert renewed.regenerated
    assert after["ca.crt"] == before["ca.crt"]
    assert after["tls.crt"] != before["tls.crt"]


def test_write_dev_certs_regenerates_everything_for_a_new_ca(tmp_path: Path) -> None:
    generate.write_dev_certs(tmp_path, dns=["localhost"], ips=[])
    before = snapshot(tmp_path)
    (tmp_path / "ca.key").unlink()
    again = generate.write_dev_certs(tmp_path, dns=["localhost"], ips=[])
    after = snapshot(tmp_path)
    assert again.regenerated
    assert all(after[name] != before[name] for name in ("ca.crt", "tls.crt", "tls.key"))
    load(after["tls.crt"]).verify_directly_issued_by(load(after["ca.crt"]))


def test_write_dev_certs_replaces_a_leaf_not_signed_by_the_ca(tmp_path: Path) -> None:
    generate.write_dev_certs(tmp_path, dns=["localhost"], ips=[])
    foreign_ca = generate.generate_ca("someone-else")
    foreign_cert, foreign_key = generate.generate_serving_cert(*foreign_ca, ["localhost"], [])
    (tmp_path / "tls.crt").write_bytes(foreign_cert)
    (tmp_path / "tls.key").write_bytes(foreign_key)
    assert generate.write_dev_certs(tmp_path, dns=["localhost"], ips=[]).regenerated
    load((tmp_path / "tls.crt").read_bytes()).verify_directly_issued_by(load((tmp_path / "ca.crt").read_bytes()))


def test_write_dev_certs_replaces_a_key_that_does_not_match(tmp_path: Path) -> None:
    generate.write_dev_certs(tmp_path, dns=["localhost"], ips=[])
    (tmp_path / "tls.key").write_bytes((tmp_path / "ca.key").read_bytes())
    assert generate.write_dev_certs(tmp_path, dns=["localhost"], ips=[]).regenerated
    assert checks.key_matches_cert((tmp_path / "tls.crt").read_bytes(), (tmp_path / "tls.key").read_bytes())


def test_reusability_checks_are_pure_and_strict(ca: tuple[bytes, bytes]) -> None:
    cert_pem, key_pem = generate.generate_serving_cert(*ca, ["a.svc"], ["10.1.2.3"], valid_days=90, now=NOW)
    renew = timedelta(days=30)
    assert generate.serving_cert_is_reusable(cert_pem, key_pem, ca[0], ["A.svc"], ["10.1.2.3"], renew, now=NOW)
    assert not generate.serving_cert_is_reusable(cert_pem, key_pem, ca[0], ["a.svc"], [], renew, now=NOW)
    assert not generate.serving_cert_is_reusable(
        cert_pem, key_pem, ca[0], ["a.svc"], ["10.1.2.3"], renew, now=NOW + timedelta(days=61)
    )
    assert generate.ca_is_reusable(*ca, renew, now=NOW)
    assert not generate.ca_is_reusable(cert_pem, key_pem, renew, now=NOW)  # a leaf is no CA
    assert not generate.ca_is_reusable(b"", b"", renew, now=NOW)


def test_pair_problem_names_the_broken_part_without_key_material(ca: tuple[bytes, bytes]) -> None:
    cert_pem, key_pem = generate.generate_serving_cert(*ca, ["a"], [], now=NOW)
    _, other_key_pem = generate.generate_serving_cert(*ca, ["a"], [], now=NOW)
    assert checks.pair_problem(cert_pem, key_pem) is None
    assert checks.pair_problem(cert_pem[:200], key_pem) == "the certificate is incomplete or not PEM"
    assert checks.pair_problem(cert_pem, key_pem[:100]) == "the private key is incomplete, encrypted or not PEM"
    assert checks.pair_problem(cert_pem, other_key_pem) == "the private key does not match the certificate"
