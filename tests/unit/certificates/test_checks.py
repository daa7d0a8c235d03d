"""Certificate checks: what the logs say about a certificate holds no key material."""

from __future__ import annotations

from tests.support import x509_facts
from webhook.certificates import checks, generate


def test_describe_holds_serial_fingerprint_and_expiry_but_no_key_material() -> None:
    ca_pem, ca_key = generate.generate_ca("unit-ca")
    cert_pem, key_pem = generate.generate_serving_cert(ca_pem, ca_key, ["localhost"], ["127.0.0.1"])
    description = checks.describe(cert_pem)
    assert f"serial={x509_facts.cert_serial(cert_pem):x}" in description
    assert "sha256=" in description and "expires=" in description
    assert "BEGIN" not in description and key_pem.decode().splitlines()[1] not in description
    assert checks.describe(b"garbage") == "unreadable certificate"
