"""The certificate sync's local side: serving files written only on change, and which CAs every
webhook trusts. The cluster side (Secret writes, races, caBundle patching) is in tests/e2e/test_certsync.py.
"""

from __future__ import annotations

import stat
from pathlib import Path

from tests.unit.certificates.planning import fp, webhook_config
from webhook.certificates import generate, sync
from webhook.certificates.rotation import Material


def test_serving_files_are_written_only_on_change_with_a_private_key_mode(tmp_path: Path, fresh: Material) -> None:
    out = tmp_path / "tls"
    assert sync.write_serving_files(out, fresh)
    assert (out / "tls.crt").read_bytes() == fresh.tls_cert
    assert (out / "tls.key").read_bytes() == fresh.tls_key
    assert stat.S_IMODE((out / "tls.key").stat().st_mode) == 0o600
    assert not sync.write_serving_files(out, fresh)
    assert sorted(p.name for p in out.iterdir()) == ["tls.crt", "tls.key"]


def test_trusted_cas_are_those_every_webhook_carries(fresh: Material) -> None:
    other_ca = generate.generate_ca("other")[0]
    both = fresh.ca_cert + other_ca
    trusted = sync.CertSyncer.trusted_by_every_webhook(webhook_config(both, fresh.ca_cert))
    assert trusted == frozenset({fp(fresh.ca_cert)})
    assert sync.CertSyncer.trusted_by_every_webhook(webhook_config(both, b"")) == frozenset()
    assert sync.CertSyncer.trusted_by_every_webhook(None) is None
