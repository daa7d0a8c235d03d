"""What the TLS and runner tests share: a CA and serving pairs, a fake clock for the reload throttle, and a
TLS handshake over memory BIOs (a real handshake, no sockets)."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.support import x509_facts
from webhook.certificates import generate
from webhook.server import tls


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
