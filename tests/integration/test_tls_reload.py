"""The real server process over real TLS: protocol floor, keep-alive, and certificate rotation under load."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.support import x509_facts
from tests.support.servers import DevCerts, RunningServer, SecretVolume, StartServer, peer_serial, stop_server
from webhook.certificates import generate

APP_SPEC = "tests.integration.tls_app:create_app"
SWAP_WAIT_S = 90.0  # bounds a wait for the new certificate; not a speed assertion


@pytest.fixture
def tls_server(server_process: StartServer, dev_certs: DevCerts) -> RunningServer:
    return server_process(APP_SPEC, dev_certs)


@pytest.mark.parametrize(
    ("version", "name"), [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")]
)
def test_tls12_and_tls13_are_accepted(tls_server: RunningServer, version: ssl.TLSVersion, name: str) -> None:
    context = tls_server.client_context()
    context.minimum_version = context.maximum_version = version
    connection = http.client.HTTPSConnection(tls_server.host, tls_server.port, timeout=30, context=context)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"ok")
        assert isinstance(connection.sock, ssl.SSLSocket)
        assert connection.sock.version() == name
    finally:
        connection.close()


def tls11_client(ca_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(ca_file))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.warns(DeprecationWarning):
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def test_tls11_is_refused_by_the_server(tls_server: RunningServer, dev_certs: DevCerts) -> None:
    """The client really offers TLS 1.1 (security level 0 allows it locally: a TLS 1.1 server on the same
    certificate accepts it), so the failed handshake is the server's refusal. asyncio closes a connection
    whose handshake failed without flushing OpenSSL's alert, so the client sees the alert or an EOF."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.warns(DeprecationWarning):
        server_context.minimum_version = ssl.TLSVersion.TLSv1_1
    server_context.load_cert_chain(str(dev_certs.cert_file), str(dev_certs.key_file))
    with socket.create_server((tls_server.host, 0)) as listener:
        accepted: list[str] = []

        def accept_one() -> None:
            raw, _ = listener.accept()
            with server_context.wrap_socket(raw, server_side=True) as tls:
                accepted.append(str(tls.version()))

        thread = threading.Thread(target=accept_one, daemon=True)
        thread.start()
        with socket.create_connection(listener.getsockname(), timeout=30) as raw:
            with tls11_client(dev_certs.ca_file).wrap_socket(raw, server_hostname=tls_server.host) as tls:
                assert tls.version() == "TLSv1.1"
        thread.join(timeout=30)
        assert accepted == ["TLSv1.1"]

    connection = http.client.HTTPSConnection(
        tls_server.host, tls_server.port, timeout=30, context=tls11_client(dev_certs.ca_file)
    )
    with pytest.raises((ssl.SSLError, ConnectionError)) as refused:
        connection.request("GET", "/healthz")
    connection.close()
    assert getattr(refused.value, "reason", "EOF") in (
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "UNEXPECTED_EOF_WHILE_READING",
        "EOF",
    )
    assert tls_server.request("GET", "/healthz")[0] == 200


def test_keep_alive_reuses_the_connection(tls_server: RunningServer) -> None:
    connection = tls_server.connection()
    try:
        seen = []
        first_socket = None
        for index in range(5):
            connection.request("POST", "/whoami", body=b"x" * index)
            response = connection.getresponse()
            assert response.status == 200
            assert (response.getheader("Connection") or "").lower() != "close"
            seen.append(json.loads(response.read()))
            first_socket = first_socket or connection.sock
            assert connection.sock is first_socket
        assert len({(entry["pid"], entry["remote_port"]) for entry in seen}) == 1
        assert [entry["received_bytes"] for entry in seen] == [0, 1, 2, 3, 4]
    finally:
        connection.close()


def test_presents_the_serving_certificate_for_ip_and_dns_names(tls_server: RunningServer, dev_certs: DevCerts) -> None:
    expected_serial = x509_facts.cert_serial(dev_certs.cert_file.read_bytes())
    for host_name in ("127.0.0.1", "localhost"):
        connection = http.client.HTTPSConnection(
            host_name, tls_server.port, timeout=30, context=tls_server.client_context()
        )
        try:
            connection.request("GET", "/healthz")
            assert connection.getresponse().status == 200
            assert peer_serial(connection) == expected_serial
        finally:
            connection.close()


def test_plain_http_option_serves_without_tls(server_process: StartServer) -> None:
    server = server_process(APP_SPEC, None, workers=1)
    assert server.base_url.startswith("http://")
    status, _, body = server.request("GET", "/healthz")
    assert (status, body) == (200, b"ok")


# --- rotation under load ------------------------------------------------------------------------------


@dataclass
class LoadRecord:
    pid: int
    serial: int


@dataclass
class Load:
    """Client threads doing requests continuously until stopped; every failure is kept."""

    server: RunningServer
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: list[LoadRecord] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    keep_alive_requests: int = 0

    def fresh_connections(self) -> None:
        context = self.server.client_context()
        while not self.stop.is_set():
            connection = http.client.HTTPSConnection(self.server.host, self.server.port, timeout=30, context=context)
            try:
                connection.request("GET", "/whoami")
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    raise AssertionError(f"status {response.status}")
                record = LoadRecord(json.loads(body)["pid"], peer_serial(connection))
                with self.lock:
                    self.records.append(record)
            except Exception as problem:
                with self.lock:
                    self.failures.append(repr(problem))
            finally:
                connection.close()

    def one_kept_alive_connection(self) -> None:
        connection = self.server.connection()
        try:
            while not self.stop.is_set():
                try:
                    connection.request("GET", "/whoami")
                    response = connection.getresponse()
                    response.read()
                    if response.status != 200:
                        raise AssertionError(f"status {response.status}")
                    with self.lock:
                        self.keep_alive_requests += 1
                except Exception as problem:
                    with self.lock:
                        self.failures.append(f"keep-alive: {problem!r}")
                    return
        finally:
            connection.close()


def probe(server: RunningServer) -> LoadRecord:
    connection = server.connection()
    try:
        connection.request("GET", "/whoami")
        response = connection.getresponse()
        assert response.status == 200
        return LoadRecord(json.loads(response.read())["pid"], peer_serial(connection))
    finally:
        connection.close()


def wait_for_serial(server: RunningServer, serial: int, workers: int, probes: list[LoadRecord]) -> None:
    """Sequential fresh handshakes until the new certificate came from every worker and from the
    last 10 in a row; bounded, so a server that never switches fails instead of hanging."""
    deadline = time.monotonic() + SWAP_WAIT_S
    consecutive = 0
    pids_with_new: set[int] = set()
    while time.monotonic() < deadline:
        record = probe(server)
        probes.append(record)
        if record.serial == serial:
            consecutive += 1
            pids_with_new.add(record.pid)
        else:
            consecutive = 0
        if consecutive >= 10 and len(pids_with_new) >= workers:
            return
    raise AssertionError(f"serial {serial:x} not served by all workers: {pids_with_new}\n{server.logs()}")


@pytest.mark.timeout(420)
def test_certificate_rotation_under_load_fails_no_request(
    server_process: StartServer, dev_certs: DevCerts, tmp_path: Path
) -> None:
    ca_pem, ca_key_pem = dev_certs.ca_file.read_bytes(), dev_certs.ca_key_file.read_bytes()
    pairs = [generate.generate_serving_cert(ca_pem, ca_key_pem, ["localhost"], ["127.0.0.1"]) for _ in range(7)]
    serials = [x509_facts.cert_serial(cert_pem) for cert_pem, _ in pairs]
    volume = SecretVolume(tmp_path / "secret-volume")
    volume.swap_symlink(*pairs[0])
    workers = 2
    server = server_process(
        APP_SPEC,
        replace(dev_certs, cert_file=volume.cert_file, key_file=volume.key_file),
        workers=workers,
        reload_interval_s=0.1,
    )
    load = Load(server)
    threads = [threading.Thread(target=load.fresh_connections, daemon=True) for _ in range(4)]
    threads.append(threading.Thread(target=load.one_kept_alive_connection, daemon=True))
    for thread in threads:
        thread.start()
    probes: list[LoadRecord] = []
    try:
        wait_for_serial(server, serials[0], workers, probes)
        for index, (cert_pem, key_pem) in enumerate(pairs[1:], start=1):
            if index % 2:
                volume.swap_symlink(cert_pem, key_pem)
            else:
                volume.rewrite_in_place(cert_pem, key_pem, pause_s=0.5)
            wait_for_serial(server, serials[index], workers, probes)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=60)

    assert load.failures == []
    assert len(load.records) >= 50, "the load threads did too little to prove anything"
    assert load.keep_alive_requests >= 10
    assert {record.serial for record in load.records} <= set(serials)
    assert len({record.serial for record in load.records}) >= 4, "rotations happened under load"
    rank = {serial: position for position, serial in enumerate(serials)}
    for pid in {record.pid for record in probes}:
        ranks = [rank[record.serial] for record in probes if record.pid == pid]
        assert ranks == sorted(ranks), f"worker {pid} went back to an older certificate"
    logs = server.logs()
    assert "PRIVATE KEY" not in logs and "Traceback" not in logs
    assert logs.count("serving certificate reloaded") >= workers * (len(pairs) - 1)
    # torn in-place writes are reported at most once per worker and bad pair
    assert logs.count("certificate files not usable") <= workers * 3 * 2


# --- the fixtures themselves --------------------------------------------------------------------------


def group_members(process_group: int) -> set[int]:
    """Live processes of a process group, from /proc (field 5 of stat is the pgrp)."""
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat_fields[2]) == process_group and stat_fields[0] != "Z":
            members.add(int(entry.name))
    return members


def test_stopping_a_server_leaves_no_process_behind(server_process: StartServer, dev_certs: DevCerts) -> None:
    server = server_process(APP_SPEC, dev_certs, workers=2)
    deadline = time.monotonic() + 60  # readiness means one worker answered; wait for the second
    while len(members := group_members(server.process.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.process.pid in members and len(members) >= 3  # master and two workers
    stop_server(server)
    assert group_members(server.process.pid) == set()


def test_a_server_that_cannot_start_reports_its_output(server_process: StartServer, dev_certs: DevCerts) -> None:
    with pytest.raises(RuntimeError, match=r"No module named 'tests\.integration\.no_such_module'"):
        server_process("tests.integration.no_such_module:app", dev_certs)


def test_a_mismatched_pair_at_start_up_is_refused_with_a_clear_message(
    server_process: StartServer, dev_certs: DevCerts
) -> None:
    ca_pem, ca_key_pem = dev_certs.ca_file.read_bytes(), dev_certs.ca_key_file.read_bytes()
    _, other_key = generate.generate_serving_cert(ca_pem, ca_key_pem, ["localhost"], [])
    dev_certs.key_file.write_bytes(other_key)
    with pytest.raises(RuntimeError, match="does not match the certificate") as refused:
        server_process(APP_SPEC, dev_certs)
    assert "PRIVATE KEY" not in str(refused.value)
