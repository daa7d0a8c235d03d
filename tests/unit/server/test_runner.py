"""The embedded gunicorn: every option it accepts, our TLS context and worker, a transport that is never ambiguous."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.integration import tls_app
from tests.support import x509_facts
from webhook.certificates import generate
from webhook.server import runner, tls
from webhook.server.connection import Limits
from webhook.server.worker import AsyncioWorker


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


def test_gunicorn_options_use_our_context_and_no_access_log(tmp_path: Path, pairs: list[Pair]) -> None:
    reloader = make_reloader(*write_pair(tmp_path / "live", pairs[0]), FakeClock())
    tls_options = options(reloader)
    assert tls_options["bind"] == ["[::1]:8443"]
    assert tls_options["worker_class"] == "webhook.server.worker.AsyncioWorker"
    assert tls_options["accesslog"] is None
    assert tls_options["certfile"] == reloader.cert_file
    ssl_context_hook = tls_options["ssl_context"]
    assert ssl_context_hook(None, None) is reloader.context
    plain_options = options(None, access_log=True)
    assert "ssl_context" not in plain_options and "certfile" not in plain_options
    assert plain_options["accesslog"] == "-"


def test_embedded_gunicorn_accepts_every_option(tmp_path: Path, pairs: list[Pair]) -> None:
    """Gunicorn validates settings (types, hook arity) when they are set, not when it runs."""
    reloader = make_reloader(*write_pair(tmp_path / "live", pairs[0]), FakeClock())
    embedded = runner._EmbeddedGunicorn(lambda: tls_app.app, options(reloader), Limits(max_connections=7))
    assert embedded.cfg.is_ssl
    assert embedded.cfg.ssl_context(embedded.cfg, None) is reloader.context
    assert embedded.cfg.worker_class is AsyncioWorker
    assert embedded.cfg.workers == 2 and embedded.http_limits.max_connections == 7
    assert embedded.load() is tls_app.app


def test_serve_refuses_ambiguous_transport() -> None:
    with pytest.raises(ValueError, match="cert_file and key_file"):
        runner.serve("tests.integration.tls_app:app", port=1)
    with pytest.raises(ValueError, match="mutually exclusive"):
        runner.serve("tests.integration.tls_app:app", port=1, plain_http=True, cert_file="x", key_file="y")






