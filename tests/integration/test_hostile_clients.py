"""Slow, idle and oversized clients cannot stall the real server or grow its memory without bound.

The real `wandb-kfp-webhook serve` (2 workers) over TLS on loopback; the attackers are
tests/support/hostile.py (many connections that never complete a request, reconnecting when closed) and
the reviews come from tests/support/openloop.py at a fixed rate. Every wait below is a hang guard, not a
speed assertion: the figures (p99 under attack) are measured by `make bench`.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures import pods as fixture_pods
from tests.support.reviews import admission_review
from tests.support.servers import NO_CLUSTER_ENV, REPO_ROOT, SERVE_COMMAND, RunningServer

SERVE = [*SERVE_COMMAND, "--workers", "2"]
NO_CLUSTER = NO_CLUSTER_ENV
MAX_BODY = 8 * 1024 * 1024


def start(server_process, dev_certs, **env: str) -> RunningServer:
    return server_process("webhook.server.app:create_app", dev_certs, {**NO_CLUSTER, **env}, command=SERVE)


def review_body(uid: str = "uid-1") -> bytes:
    name = fixture_pods.fixtures_of_kind("kfp-v2-executor")[0]
    return json.dumps(admission_review(fixture_pods.load_pod(name), uid)).encode()


def hostile(server: RunningServer, connections: int, duration: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.hostile",
            "--port",
            str(server.port),
            "--ca-file",
            str(server.ca_file),
            "--connections",
            str(connections),
            "--duration",
            str(duration),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )


def tally_of(process: subprocess.Popen[str]) -> dict:
    out, _ = process.communicate(timeout=120)
    line = next(line for line in out.splitlines() if line.startswith("HOSTILE "))
    return json.loads(line.removeprefix("HOSTILE "))


def worker_pids(server: RunningServer, expected: int = 0) -> list[int]:
    """The gunicorn workers (children of the server process); with `expected`, wait until that many are up."""
    for _ in range(600):
        found = _children(server)
        if len(found) >= expected:
            return found
        time.sleep(0.1)
    return found


def _children(server: RunningServer) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == server.process.pid:
                found.append(int(entry.name))
    return sorted(found)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def raw_exchange(server: RunningServer, data: bytes, read_timeout: float = 30.0) -> bytes:
    """Send bytes on a fresh TLS connection and read until the server closes it."""
    context = ssl.create_default_context(cafile=str(server.ca_file))
    with socket.create_connection((server.host, server.port), timeout=read_timeout) as raw:
        with context.wrap_socket(raw, server_hostname=server.host) as tls:
            try:
                tls.sendall(data)
            except (OSError, ssl.SSLError):
                pass
            received = b""
            while True:
                try:
                    chunk = tls.recv(65536)
                except (OSError, ssl.SSLError):
                    break
                if not chunk:
                    break
                received += chunk
            return received


def test_slow_and_idle_clients_do_not_stall_reviews(server_process, dev_certs):
    server = start(server_process, dev_certs, WANDB_KFP_WEBHOOK_REQUEST_TIMEOUT_SECONDS="2")
    attackers = hostile(server, connections=100, duration=8)  # 20 of each mode; gthread had 8 slots
    time.sleep(2)
    for number in range(40):
        status, _, payload = server.request("POST", "/mutate", review_body(f"uid-{number}"))
        assert status == 200 and json.loads(payload)["response"]["uid"] == f"uid-{number}"
        assert server.request("GET", "/healthz")[0] == 200
    tally = tally_of(attackers)
    assert tally["held_max"] >= 90, tally
    # Every kind of held connection was cut at the 2 s deadline: 408 where a request had begun.
    assert tally["closed_by_server"] >= 100, tally
    assert tally["answers"].get("408", 0) >= 20, tally


def test_a_chunked_body_over_the_cap_is_refused_with_413_and_a_whole_one_is_answered(server_process, dev_certs):
    server = start(server_process, dev_certs)
    head = b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"x" * (1024 * 1024)
    too_big = head + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(9)) + b"0\r\n\r\n"
    answer = raw_exchange(server, too_big)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"request body over" in answer
    body = review_body("uid-chunked")
    whole = head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    answer = raw_exchange(server, whole + b"", read_timeout=30)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b'"uid":"uid-chunked"' in answer


def test_oversized_content_length_and_headers_are_refused_at_once(server_process, dev_certs):
    server = start(server_process, dev_certs)
    declared = raw_exchange(server, b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1))
    assert declared.startswith(b"HTTP/1.1 413 "), declared[:200]
    huge_header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (128 * 1024) + b"\r\n\r\n"
    assert raw_exchange(server, huge_header).startswith(b"HTTP/1.1 431 ")
    assert raw_exchange(server, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")


def test_a_body_that_never_completes_gets_408_at_the_deadline(server_process, dev_certs):
    server = start(server_process, dev_certs, WANDB_KFP_WEBHOOK_REQUEST_TIMEOUT_SECONDS="1")
    answer = raw_exchange(server, b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_past_max_connections_new_clients_are_still_served(server_process, dev_certs):
    server = start(server_process, dev_certs, WANDB_KFP_WEBHOOK_MAX_CONNECTIONS="16")
    attackers = hostile(server, connections=150, duration=6)
    time.sleep(2)
    for number in range(20):
        assert server.request("POST", "/mutate", review_body(f"uid-{number}"))[0] == 200
    tally = tally_of(attackers)
    assert tally["closed_by_server"] > 100, "the oldest held connections were dropped for new ones"


def test_a_thousand_held_connections_while_500_reviews_per_second_flow(server_process, dev_certs, tmp_path):
    """Every review answered, worker memory bounded, no worker restarted (p99 is in `make bench`)."""
    server = start(server_process, dev_certs)
    workers = worker_pids(server, expected=2)
    assert len(workers) == 2
    rss_before = {pid: rss_mb(pid) for pid in workers}
    attackers = hostile(server, connections=1000, duration=25)
    time.sleep(6)  # all 1,000 connected and misbehaving
    manifest = tmp_path / "reviews.txt"
    bodies = []
    for index, entry in enumerate(fixture_pods.load_index()):
        path = tmp_path / f"review-{index}.json"
        path.write_text(json.dumps(admission_review(fixture_pods.load_pod(entry["name"]), f"uid-{index}")))
        bodies.append(str(path))
    manifest.write_text("\n".join(bodies) + "\n")
    peak = dict(rss_before)
    loop = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.openloop",
            "--port",
            str(server.port),
            "--ca-file",
            str(server.ca_file),
            "--manifest",
            str(manifest),
            "--rate",
            "500",
            "--duration",
            "10",
            "--connections",
            "16",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    while loop.poll() is None:
        for pid in workers:
            peak[pid] = max(peak[pid], rss_mb(pid))
        time.sleep(0.5)
    out, _ = loop.communicate(timeout=120)
    result = json.loads(next(line for line in out.splitlines() if line.startswith("OPENLOOP ")).split(" ", 1)[1])
    tally = tally_of(attackers)
    assert tally["held_max"] >= 900, tally
    assert result["requests_sent"] == 5000
    assert result["requests_ok"] == 5000 and result["errors"] == 0, result
    assert worker_pids(server) == workers, "no worker was restarted"
    growth = {pid: peak[pid] - rss_before[pid] for pid in workers}
    assert all(mb < 100 for mb in growth.values()), growth  # 1,000 held connections, bounded buffers
    print(f"\nheld={tally['held_max']} answered={result['requests_ok']} p99={result['p99_ms']}ms rss+={growth}")
