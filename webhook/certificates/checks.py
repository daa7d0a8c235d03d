"""Every question the webhook asks of a certificate, asked in one place: pure, PEM or x509 objects in.

Used by generation (may an existing CA or leaf be kept?), by rotation planning (what does the Secret need?)
and by the server (may this pair be served?). Nothing here returns or logs key material: descriptions
carry serials, fingerprints and expiry times only.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_ips(ip_addresses: Iterable[str]) -> list[IPAddress]:
    return [ipaddress.ip_address(ip) for ip in ip_addresses]


def cert_sans(cert_pem: bytes) -> tuple[frozenset[str], frozenset[IPAddress]]:
    """(DNS names lower-cased, IP addresses) of the certificate's SAN extension; empty when absent."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return frozenset(), frozenset()
    dns = frozenset(name.lower() for name in san.get_values_for_type(x509.DNSName))
    ips = frozenset(
        ip
        for ip in san.get_values_for_type(x509.IPAddress)
        if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address))
    )
    return dns, ips


def has_sans(cert_pem: bytes, dns_names: Iterable[str], ip_addresses: Iterable[str]) -> bool:
    """Whether the certificate names exactly these DNS names (any case) and IP addresses."""
    wanted = (frozenset(name.lower() for name in dns_names), frozenset(parse_ips(ip_addresses)))
    return cert_sans(cert_pem) == wanted


def needs_renewal(cert_pem: bytes, before: timedelta, *, now: datetime | None = None) -> bool:
    """True when the certificate is unreadable, not yet valid, or expires within ``before``."""
    checked_at = now or utcnow()
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return True
    return checked_at < cert.not_valid_before_utc or checked_at + before >= cert.not_valid_after_utc


def pair_problem(cert_pem: bytes, key_pem: bytes) -> str | None:
    """Why this certificate/key pair cannot be served (safe to log: no key material), or None."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        return "the certificate is incomplete or not PEM"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return "the private key is incomplete, encrypted or not PEM"
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return "the private key does not match the certificate"
    return None


def key_matches_cert(cert_pem: bytes, key_pem: bytes) -> bool:
    """True when the private key is the one the certificate was issued for (a torn write is not)."""
    return pair_problem(cert_pem, key_pem) is None


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def signed_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


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


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


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
