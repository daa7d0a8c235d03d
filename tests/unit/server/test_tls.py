"""The TLS of the server: certificates reloaded at handshake, never a torn or mismatched pair served."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.unit.server.tlskit import FakeClock, Pair, handshake_serial, kubelet_layout, make_reloader, write_pair
from webhook.server import tls


def test_initial_pair_is_served_with_tls12_minimum(tmp_path: Path, pairs: list[Pair], ca_file: Path) -> None:
    reloader = make_reloader(*write_pair(tmp_path / "live", pairs[0]), FakeClock())
    assert reloader.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert handshake_serial(reloader.current(), ca_file) == pairs[0].serial


def test_changed_files_are_picked_up_only_after_the_interval(tmp_path: Path, pairs: list[Pair], ca_file: Path) -> None:
    clock = FakeClock()
    reloader = make_reloader(*write_pair(tmp_path / "live", pairs[0]), clock)
    reloader.current()
    write_pair(tmp_path / "live", pairs[1])
    clock.advance(0.4)
    assert handshake_serial(reloader.current(), ca_file) == pairs[0].serial
    clock.advance(0.2)
    assert handshake_serial(reloader.current(), ca_file) == pairs[1].serial
    assert reloader.reload_count == 1


def test_a_context_handed_out_earlier_switches_at_handshake(tmp_path: Path, pairs: list[Pair], ca_file: Path) -> None:
    """What protects workers that keep one context (other gunicorn worker types, later versions)."""
    clock = FakeClock()
    reloader = make_reloader(*write_pair(tmp_path / "live", pairs[0]), clock)
    old_context = reloader.current()
    write_pair(tmp_path / "live", pairs[1])
    clock.advance(1)
    assert handshake_serial(old_context, ca_file) == pairs[1].serial
    assert handshake_serial(old_context, ca_file, server_name=None) == pairs[1].serial
    assert reloader.context is not old_context


def test_no_sni_handshake_also_switches(tmp_path: Path, pairs: list[Pair], ca_file: Path) -> None:
    clock = FakeClock()
    reloader = make_reloader(*write_pair(tmp_path / "live", pairs[0]), clock)
    old_context = reloader.current()
    write_pair(tmp_path / "live", pairs[2])
    clock.advance(1)
    assert handshake_serial(old_context, ca_file, server_name=None) == pairs[2].serial


def test_symlink_swap_is_picked_up(tmp_path: Path, pairs: list[Pair], ca_file: Path) -> None:
    clock = FakeClock()
    reloader = make_reloader(*kubelet_layout(tmp_path / "secret", pairs[0], 0), clock)
    kubelet_layout(tmp_path / "secret", pairs[1], 1)
    clock.advance(1)
    assert handshake_serial(reloader.current(), ca_file) == pairs[1].serial


def test_mismatched_pair_keeps_the_old_certificate_and_warns_once(
    tmp_path: Path, pairs: list[Pair], ca_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    cert_file, key_file = write_pair(tmp_path / "live", pairs[0])
    reloader = make_reloader(cert_file, key_file, clock)
    Path(cert_file).write_bytes(pairs[1].cert_pem)  # cert replaced, key not yet: a torn rotation
    with caplog.at_level(logging.DEBUG, logger="webhook.server.tls"):
        for _ in range(5):
            clock.advance(1)
            assert handshake_serial(reloader.current(), ca_file) == pairs[0].serial
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "does not match" in warnings[0].getMessage()
    assert all("PRIVATE KEY" not in record.getMessage() for record in caplog.records)
    Path(key_file).write_bytes(pairs[1].key_pem)
    clock.advance(1)
    assert handshake_serial(reloader.current(), ca_file) == pairs[1].serial


def test_a_pair_seen_only_once_mid_write_is_not_warned_about(
    tmp_path: Path, pairs: list[Pair], ca_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    cert_file, key_file = write_pair(tmp_path / "live", pairs[0])
    reloader = make_reloader(cert_file, key_file, clock)
    Path(cert_file).write_bytes(pairs[1].cert_pem[:100])  # half-written certificate
    with caplog.at_level(logging.DEBUG, logger="webhook.server.tls"):
        clock.advance(1)
        assert handshake_serial(reloader.current(), ca_file) == pairs[0].serial
        write_pair(tmp_path / "live", pairs[1])
        clock.advance(1)
        reloader.current()
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert handshake_serial(reloader.context, ca_file) == pairs[1].serial


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda cert, key: Path(cert).write_bytes(b""), id="empty-cert"),
        pytest.param(lambda cert, key: Path(key).write_bytes(b"garbage"), id="garbage-key"),
        pytest.param(lambda cert, key: Path(key).unlink(), id="missing-key"),
    ],
)
def test_damaged_files_keep_the_old_certificate(tmp_path: Path, pairs: list[Pair], ca_file: Path, damage: Any) -> None:
    clock = FakeClock()
    cert_file, key_file = write_pair(tmp_path / "live", pairs[0])
    reloader = make_reloader(cert_file, key_file, clock)
    damage(cert_file, key_file)
    for _ in range(3):
        clock.advance(1)
        assert handshake_serial(reloader.current(), ca_file) == pairs[0].serial
    assert reloader.reload_count == 0


def test_start_up_refuses_a_mismatched_pair(tmp_path: Path, pairs: list[Pair]) -> None:
    directory = tmp_path / "live"
    write_pair(directory, pairs[0])
    (directory / "tls.key").write_bytes(pairs[1].key_pem)
    with pytest.raises(tls.CertificateLoadError, match="does not match"):
        tls.CertificateReloader(str(directory / "tls.crt"), str(directory / "tls.key"))
    with pytest.raises(tls.CertificateLoadError, match="cannot read"):
        tls.CertificateReloader(str(directory / "nope.crt"), str(directory / "tls.key"))


def test_a_chain_file_is_served_and_a_torn_chain_is_not(
    tmp_path: Path, ca: tuple[bytes, bytes], pairs: list[Pair], ca_file: Path
) -> None:
    """cert-manager writes leaf + CA into tls.crt; a chain cut mid-way must not replace a good one."""
    clock = FakeClock()
    chained = Pair(pairs[0].cert_pem + ca[0], pairs[0].key_pem)
    cert_file, _ = write_pair(tmp_path / "live", chained)
    reloader = make_reloader(cert_file, str(tmp_path / "live" / "tls.key"), clock)
    assert handshake_serial(reloader.current(), ca_file) == pairs[0].serial
    write_pair(tmp_path / "live", Pair(pairs[1].cert_pem + ca[0][:150], pairs[1].key_pem))
    clock.advance(1)
    assert handshake_serial(reloader.current(), ca_file) == pairs[0].serial
    assert reloader.reload_count == 0
