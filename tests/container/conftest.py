"""Session fixtures of the container tier: podman and the images, built once after collection.

Building (Debian root filesystems, the webhook image, one component image per CPython minor) takes minutes
on a cold cache, so it happens in pytest_collection_finish, outside any per-test timeout, and only when a
container test was selected. Where this machine cannot run containers (not Linux, not root, podman not
installable), every test of the tier is skipped with that one reason; WKW_CONTAINERS_REQUIRED=1 makes that
a failure instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.container.images import (
    COMPONENT_RECIPES,
    BuiltImage,
    ensure_component_image,
    ensure_webhook_image,
)
from tests.container.podman import ContainersUnavailable, ensure_tools

KUBEFLOW_URL = "https://kubeflow.example.test/pipeline"

_HERE = Path(__file__).parent
_STATE = pytest.StashKey[dict[str, Any]]()


def _selected(session: pytest.Session) -> bool:
    return any(_HERE in Path(str(item.path)).parents for item in session.items)


def _build_all() -> dict[str, Any]:
    state: dict[str, Any] = {"components": {}}
    try:
        ensure_tools()
    except ContainersUnavailable as unavailable:
        state["unavailable"] = str(unavailable)
        return state
    state["webhook"] = ensure_webhook_image()
    for minor in COMPONENT_RECIPES:
        try:
            state["components"][minor] = ensure_component_image(minor)
        except LookupError as missing:
            state["components"][minor] = missing
    return state


def pytest_collection_finish(session: pytest.Session) -> None:
    if _selected(session):
        try:
            session.config.stash[_STATE] = _build_all()
        except Exception as error:  # reported by every test of the tier, not as a collection crash
            session.config.stash[_STATE] = {"error": error, "components": {}}


def _state(config: pytest.Config) -> dict[str, Any]:
    state = config.stash.get(_STATE, None)
    if state is None:
        state = config.stash[_STATE] = _build_all()
    return state


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip here rather than in a fixture, so the report folds every test of the tier into one line."""
    state = _state(item.config)
    if "unavailable" in state:
        if os.environ.get("WKW_CONTAINERS_REQUIRED") == "1":
            pytest.fail(f"containers unavailable and WKW_CONTAINERS_REQUIRED=1: {state['unavailable']}")
        pytest.skip(f"container tier: this machine cannot run containers: {state['unavailable']}")


@pytest.fixture(scope="session")
def images(request: pytest.FixtureRequest) -> dict[str, Any]:
    state = _state(request.config)
    if "error" in state:
        raise state["error"]
    return state


@pytest.fixture(scope="session")
def webhook_image(images: dict[str, Any]) -> BuiltImage:
    """The project's Dockerfile, built here: localhost/wandb-kfp-webhook:<version>-<key>."""
    image: BuiltImage = images["webhook"]
    return image


@pytest.fixture(scope="session")
def component_image(images: dict[str, Any]):  # type: ignore[no-untyped-def]
    """Factory: component_image("3.8") -> BuiltImage; skips when this machine has no such CPython."""

    def get(minor: str) -> BuiltImage:
        found = images["components"][minor]
        if isinstance(found, LookupError):
            pytest.skip(str(found))
        image: BuiltImage = found
        return image

    return get


@pytest.fixture(scope="session")
def webhook_config(webhook_image: BuiltImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Server settings for preview: the injected init container runs the image built here."""
    path = tmp_path_factory.mktemp("config") / "config.yaml"
    settings = {"shim_image": webhook_image.name, "shim_image_pull_policy": "Never", "kubeflow_url": KUBEFLOW_URL}
    path.write_text(yaml.safe_dump(settings))
    return path
