"""Soak: 10,000 generated AdmissionReviews and 1,000 malformed bodies against the live server, over TLS
on kept-alive connections. Every answer is a 200 or a 400, never a 500, and no worker restarts.

The reviews come from tests/support/strategies.py (real fixture pods with realistic and arbitrary
changes, envelopes an apiserver or a confused client might send). The counts are printed for the record.
"""

from __future__ import annotations

import http.client
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.integration.test_hostile_clients import NO_CLUSTER, SERVE, worker_pids
from tests.support import strategies
from tests.support.servers import RunningServer, make_dev_certs, start_server, stop_server

REVIEWS = int(os.environ.get("WKW_SOAK_REVIEWS", "10000"))
MALFORMED = int(os.environ.get("WKW_SOAK_MALFORMED", "1000"))


class Client:
    """One kept-alive TLS connection, reopened whenever the server closes it; tallies statuses."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.connection: http.client.HTTPConnection | None = None
        self.statuses: Counter[int] = Counter()

    def post(self, body: bytes) -> int:
        for _attempt in range(2):
            if self.connection is None:
                self.connection = self.server.connection(timeout_s=60)
            try:
                self.connection.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
                response = self.connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.connection.close()
                self.connection = None
            self.statuses[response.status] += 1
            return response.status
        raise AssertionError("the server dropped the connection twice for one request")


@pytest.fixture(scope="module")
def soaked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, list[int]]]:
    work = tmp_path_factory.mktemp("soak")
    server = start_server(
        work, "webhook.server.app:create_app", make_dev_certs(work / "certs"), NO_CLUSTER, command=SERVE
    )
    try:
        yield server, worker_pids(server, expected=2)
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def client(soaked_server: tuple[RunningServer, list[int]]) -> Client:
    return Client(soaked_server[0])


@settings(max_examples=REVIEWS, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=strategies.review_bodies())
def test_generated_reviews_get_200_or_400(client: Client, body: bytes) -> None:
    assert client.post(body) in (200, 400)


@settings(
    max_examples=MALFORMED, deadline=None, database=None, suppress_health_check=list(HealthCheck), derandomize=True
)
@given(body=strategies.malformed_bodies())
def test_malformed_bodies_get_400(client: Client, body: bytes) -> None:
    assert client.post(body) in (200, 400)


def test_the_soak_ran_whole_with_no_500_and_no_restart(
    client: Client, soaked_server: tuple[RunningServer, list[int]]
) -> None:
    server, workers_at_start = soaked_server
    total = sum(client.statuses.values())
    assert total >= REVIEWS + MALFORMED - 50, client.statuses  # hypothesis may skip a few duplicates
    assert set(client.statuses) <= {200, 400}, client.statuses
    assert worker_pids(server) == workers_at_start, "no worker restarted"
    logs = Path(server.log_path).read_text(errors="replace")
    assert "Traceback" not in logs and '"level": "ERROR"' not in logs
    print(f"\nsoak: {total} requests, statuses {dict(client.statuses)}, workers {workers_at_start} unchanged")
