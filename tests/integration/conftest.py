"""Shared integration fixtures: dev certificates, a free loopback port, and the real server process.

The machinery lives in tests/support/servers.py (end-to-end tests and benchmarks start servers too);
these fixtures only scope it to a test and stop every server it started, even when the test fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import (  # noqa: F401 - re-exported for the integration tests
    LOOPBACK,
    REPO_ROOT,
    DevCerts,
    RunningServer,
    StartServer,
    client_context,
    find_free_port,
    make_dev_certs,
    start_server,
    stop_server,
)


@pytest.fixture
def dev_certs(tmp_path: Path) -> DevCerts:
    return make_dev_certs(tmp_path / "certs")


@pytest.fixture
def free_port() -> int:
    return find_free_port()


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[StartServer]:
    """Returns ``start(app_spec, certs, extra_env=None, *, workers=2, reload_interval_s=0.2,
    ready_path="/healthz", command=None, host="127.0.0.1", port=None) -> RunningServer`` (see
    tests.support.servers.start_server); every server started is stopped at teardown."""
    started: list[RunningServer] = []

    def start(*args: Any, **kwargs: Any) -> RunningServer:
        server = start_server(tmp_path, *args, on_start=started.append, **kwargs)
        return server

    try:
        yield start
    finally:
        for server in started:
            stop_server(server)
