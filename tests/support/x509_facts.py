"""What tests read off a PEM certificate (serial, expiry); the product itself never needs them."""

from __future__ import annotations

from datetime import datetime

from cryptography import x509


def cert_serial(cert_pem: bytes) -> int:
    return x509.load_pem_x509_certificate(cert_pem).serial_number


def cert_not_after(cert_pem: bytes) -> datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc
