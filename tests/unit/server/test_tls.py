"""The TLS of the server: certificates reloaded at handshake, never a torn or mismatched pair served."""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.support import x509_facts
from webhook.certificates import generate
from webhook.server import runner, tls


@dataclass
class FakeClock:
    """Only the reload throttle reads it; handshakes are real."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Pair:
    cert_pem: bytes
    key_pem: bytes

    @property
    def serial(self) -> int:
        return x509_facts.cert_serial(self.cert_pem)


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return generate.generate_ca("unit-ca")


@pytest.fixture(scope="module")
def pairs(ca: tuple[bytes, bytes]) -> list[Pair]:
    return [Pair(*generate.generate_serving_cert(*ca, ["localhost"], ["127.0.0.1"])) for _ in range(3)]


@pytest.fixture
def ca_file(tmp_path: Path, ca: tuple[bytes, bytes]) -> Path:
    path = tmp_path / "ca.crt"
    path.write_bytes(ca[0])
    return path


def write_pair(directory: Path, pair: Pair) -> tuple[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(pair.cert_pem)
    (directory / "tls.key").write_bytes(pair.key_pem)
    return str(directory / "tls.crt"), str(directory / "tls.key")


def handshake_serial(server_context: ssl.SSLContext, ca_file: Path, server_name: str | None = "localhost") -> int:
    """Run a full TLS handshake between a verifying client and the server context over memory BIOs;
    return the serial of the certificate the server presented."""
    client_context = ssl.create_default_context(cafile=str(ca_file))
    if server_name is None:
        client_context.check_hostname = False  # no SNI sent, chain still verified
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, to_server, server_hostname=server_name)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    client_done = server_done = False
    for _ in range(20):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        server_in.write(to_server.read())
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
        to_client.write(server_out.read())
        if client_done and server_done:
            break
    assert client_done and server_done, "handshake did not complete"
    peer = client.getpeercert(binary_form=True)
    assert peer is not None
    return x509.load_der_x509_certificate(peer).serial_number


def make_reloader(cert_file: str, key_file: str, clock: FakeClock) -> tls.CertificateReloader:
    return tls.CertificateReloader(cert_file, key_file, reload_interval_s=0.5, clock=clock)


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


def kubelet_layout(root: Path, pair: Pair, generation: int) -> tuple[str, str]:
    """The layout kubelet gives a Secret volume: files -> ..data/ -> ..<timestamp>/, swapped by rename."""
    root.mkdir(parents=True, exist_ok=True)
    data_dir = root / f"..2030_01_01_00_00_0{generation}"
    write_pair(data_dir, pair)
    staging = root / "..data_tmp"
    staging.symlink_to(data_dir.name)
    os.replace(staging, root / "..data")
    for name in ("tls.crt", "tls.key"):
        if not (root / name).is_symlink():
            (root / name).symlink_to(f"..data/{name}")
    return str(root / "tls.crt"), str(root / "tls.key")


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








def options(reloader: tls.CertificateReloader | None, access_log: bool = False) -> dict[str, Any]:
    return runner.build_gunicorn_options(
        host="::1",
        port=8443,
        workers=2,
        keepalive_s=15,
        timeout_s=30,
        graceful_timeout_s=15,
        log_level="info",
        access_log=access_log,
        reloader=reloader,
    )












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
