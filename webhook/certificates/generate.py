"""A private CA and serving certificates signed by it, for the webhook's TLS endpoint.

The kube-apiserver only talks to a webhook over TLS and checks the serving certificate against the
``caBundle`` of the webhook configuration, by SAN (never by CN). Everything here is pure (PEM bytes in,
PEM bytes out) except :func:`write_dev_certs` and :func:`write_file_atomically`, so the same functions
serve local development and the self-managed mode that keeps the pair in a Secret (see `rotation`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.certificates.checks import (
    has_sans,
    is_ca,
    key_matches_cert,
    needs_renewal,
    parse_ips,
    signed_by,
    utcnow,
)

CLOCK_SKEW_MARGIN = timedelta(hours=1)
"""notBefore is back-dated by this much so nodes with a slightly late clock accept a fresh certificate."""

DEFAULT_RENEW_BEFORE = timedelta(days=30)
DEFAULT_CA_VALID_DAYS = 3650
DEFAULT_SERVING_VALID_DAYS = 365
DEFAULT_DEV_DNS_NAMES = ("localhost",)
DEFAULT_DEV_IP_ADDRESSES = ("127.0.0.1", "::1")

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
SERVING_CERT_FILE = "tls.crt"
SERVING_KEY_FILE = "tls.key"


@dataclass(frozen=True)
class DevCertPaths:
    """Where :func:`write_dev_certs` left the files, and whether it had to create new ones."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    regenerated: bool


def _new_key() -> ec.EllipticCurvePrivateKey:
    """P-256: small, fast handshakes, and accepted by every Kubernetes version's Go TLS stack."""
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_ec_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an EC private key")
    return key


def _key_usage(signs_certificates: bool) -> x509.KeyUsage:
    """Digital signatures, plus certificate and CRL signing for a CA: nothing else."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def generate_ca(
    common_name: str = "wandb-kfp-webhook-ca",
    valid_days: int = DEFAULT_CA_VALID_DAYS,
    *,
    now: datetime | None = None,
) -> tuple[bytes, bytes]:
    """Create a self-signed CA that may only sign leaf certificates; returns (cert_pem, key_pem)."""
    issued_at = now or utcnow()
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued_at - CLOCK_SKEW_MARGIN)
        .not_valid_after(issued_at + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def generate_serving_cert(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str] = (),
    valid_days: int = DEFAULT_SERVING_VALID_DAYS,
    *,
    now: datetime | None = None,
) -> tuple[bytes, bytes]:
    """Create a serverAuth leaf for the given SANs, signed by the CA; returns (cert_pem, key_pem)."""
    if not dns_names and not ip_addresses:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    issued_at = now or utcnow()
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = _load_ec_key(ca_key_pem)
    key = _new_key()
    public_key = key.public_key()
    ips = parse_ips(ip_addresses)
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ip) for ip in ips]
    common_name = dns_names[0] if dns_names else str(ips[0])
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued_at - CLOCK_SKEW_MARGIN)
        .not_valid_after(min(issued_at + timedelta(days=valid_days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def ca_is_reusable(
    ca_cert_pem: bytes, ca_key_pem: bytes, renew_before: timedelta, *, now: datetime | None = None
) -> bool:
    """An existing CA can stay when it is a CA, matches its key and is not near expiry."""
    if needs_renewal(ca_cert_pem, renew_before, now=now) or not key_matches_cert(ca_cert_pem, ca_key_pem):
        return False
    return is_ca(x509.load_pem_x509_certificate(ca_cert_pem))


def serving_cert_is_reusable(
    cert_pem: bytes,
    key_pem: bytes,
    ca_cert_pem: bytes,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    renew_before: timedelta,
    *,
    now: datetime | None = None,
) -> bool:
    """An existing leaf can stay when it matches its key, was signed by this CA, has exactly the
    wanted SANs and is not near expiry."""
    if needs_renewal(cert_pem, renew_before, now=now) or not key_matches_cert(cert_pem, key_pem):
        return False
    if not has_sans(cert_pem, dns_names, ip_addresses):
        return False
    try:
        ca = x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError:
        return False
    return signed_by(x509.load_pem_x509_certificate(cert_pem), ca)


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def write_file_atomically(path: Path, content: bytes, mode: int) -> None:
    """Readers see either the old or the new file, never a partial one; the mode is set before the
    content lands so a key is never world-readable, even briefly."""
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as temp_file:
            temp_file.write(content)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_dev_certs(
    out_dir: str | os.PathLike[str],
    dns: Sequence[str] = DEFAULT_DEV_DNS_NAMES,
    ips: Sequence[str] = DEFAULT_DEV_IP_ADDRESSES,
    *,
    renew_before: timedelta = DEFAULT_RENEW_BEFORE,
    ca_valid_days: int = DEFAULT_CA_VALID_DAYS,
    serving_valid_days: int = DEFAULT_SERVING_VALID_DAYS,
    now: datetime | None = None,
) -> DevCertPaths:
    """Write ca.crt, ca.key, tls.crt, tls.key into ``out_dir``, keeping files that are still good
    so a developer's trusted CA survives re-runs."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = DevCertPaths(
        ca_cert=directory / CA_CERT_FILE,
        ca_key=directory / CA_KEY_FILE,
        cert=directory / SERVING_CERT_FILE,
        key=directory / SERVING_KEY_FILE,
        regenerated=False,
    )
    ca_cert_pem, ca_key_pem = _read_or_empty(paths.ca_cert), _read_or_empty(paths.ca_key)
    regenerated = False
    if not ca_is_reusable(ca_cert_pem, ca_key_pem, renew_before, now=now):
        ca_cert_pem, ca_key_pem = generate_ca(valid_days=ca_valid_days, now=now)
        write_file_atomically(paths.ca_key, ca_key_pem, 0o600)
        write_file_atomically(paths.ca_cert, ca_cert_pem, 0o644)
        regenerated = True
    cert_pem, key_pem = _read_or_empty(paths.cert), _read_or_empty(paths.key)
    if regenerated or not serving_cert_is_reusable(cert_pem, key_pem, ca_cert_pem, dns, ips, renew_before, now=now):
        cert_pem, key_pem = generate_serving_cert(
            ca_cert_pem, ca_key_pem, dns, ips, valid_days=serving_valid_days, now=now
        )
        write_file_atomically(paths.key, key_pem, 0o600)
        write_file_atomically(paths.cert, cert_pem, 0o644)
        regenerated = True
    return DevCertPaths(paths.ca_cert, paths.ca_key, paths.cert, paths.key, regenerated)
