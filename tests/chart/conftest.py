"""The pinned helm binary for the chart tests; they skip (saying why) only when it cannot be built."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.binaries import BinariesUnavailable, ensure_helm

_HELM_KEY = pytest.StashKey[Path | BinariesUnavailable]()
_CHART_TESTS = Path(__file__).parent


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build helm once, before the first chart test, outside any per-test timeout."""
    if not any(_CHART_TESTS in Path(str(item.path)).parents for item in session.items):
        return
    try:
        session.config.stash[_HELM_KEY] = ensure_helm(build=os.environ.get("WKW_E2E_BUILD", "1") != "0")
    except BinariesUnavailable as error:
        session.config.stash[_HELM_KEY] = error


@pytest.fixture(scope="session")
def helm(request: pytest.FixtureRequest) -> Path:
    found = request.config.stash.get(_HELM_KEY, None)
    if found is None:
        try:
            found = ensure_helm(build=os.environ.get("WKW_E2E_BUILD", "1") != "0")
        except BinariesUnavailable as error:
            found = error
    if isinstance(found, BinariesUnavailable):
        pytest.skip(f"helm unavailable: {found}")
    return found
