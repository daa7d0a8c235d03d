"""The run's link in the step's logs and the component file, on real components and a real wandb Run.

The link line's format and switch are checked on a stand-in recorder; with real wandb, an offline Run
gets no link line, and an online run (wandb 0.31 from the image, and the vendored 0.18.7 on CPython 3.7)
against a local server that answers what an online run asks (tests/shim/wandb_server.py: GraphQL, file
stream, file uploads; no artifacts) prints exactly one link line with the run's URL.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.shim.support import shim_env
from tests.shim.wandb_reader import read_only_run
from tests.shim.wandb_server import LocalWandbServer
from webhook.shim import contract, runextras


class StandInRecorder:
    """The two things run_link_line asks a Recorder: whether the run is open and whether it is offline."""

    def __init__(self, url: str | None, offline: bool) -> None:
        self.run = type("Run", (), {"url": url})()
        self.offline = offline

    def active(self) -> bool:
        return True

    def _is_offline(self) -> bool:
        return self.offline


URL = "https://wandb.ai/acme/v2-add/runs/kfp-0123456789abcdef"


def test_link_line_for_an_online_run(monkeypatch):
    monkeypatch.delenv(contract.RUN_LINK, raising=False)
    assert runextras.run_link_line(StandInRecorder(URL, offline=False)) == "W&B run: " + URL
    assert runextras.run_link_line(StandInRecorder(URL, offline=True)) is None
    assert runextras.run_link_line(StandInRecorder(None, offline=False)) is None


@pytest.mark.parametrize("value", ["off", "OFF", "0", "false", "disabled"])
def test_link_line_switched_off(monkeypatch, value):
    monkeypatch.setenv(contract.RUN_LINK, value)
    assert runextras.run_link_line(StandInRecorder(URL, offline=False)) is None


def test_link_line_printed_once_with_the_shim_prefix(monkeypatch, capsys):
    monkeypatch.delenv(contract.RUN_LINK, raising=False)
    runextras.announce_run_link(StandInRecorder(URL, offline=False))
    assert capsys.readouterr().err == "wandb-kfp-shim: W&B run: " + URL + "\n"


REAL_OFFLINE_RUN = """
import json, sys
sys.path.append(sys.argv[1])
from wandb_kfp_shim.recorder import Recorder
from wandb_kfp_shim import runextras
recorder = Recorder("kfp-v1-component", "add")
started = recorder.start({"a": 1})
line = runextras.run_link_line(recorder)
url = recorder.run.url
recorder.finish()
print(json.dumps({"started": started, "line": line, "url": url, "offline": recorder._is_offline()}))
"""


def test_real_offline_run_gets_no_link_line(shim_dir, tmp_path):
    """A real wandb Run (0.31, offline because there is no API key): no link, only the sync line."""
    env = shim_env(shim_dir, {contract.WANDB_DIR: str(tmp_path), "HOME": str(tmp_path)}, debug=False)
    env.pop("PYTHONPATH")
    done = subprocess.run(
        [sys.executable, "-c", REAL_OFFLINE_RUN, str(shim_dir / contract.LIB_SUBDIR)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"started": True, "line": None, "url": None, "offline": True}
    lines = [line for line in done.stderr.splitlines() if line.startswith("wandb-kfp-shim:")]
    assert len(lines) == 1 and "wandb sync" in lines[0] and "W&B run:" not in lines[0]


def test_component_file_over_the_upload_limit_is_skipped_with_one_line(component):
    case = component("v1-add")
    baseline = case.run(shim=False)
    recorded = case.run(shim=True, extra_env={contract.MAX_UPLOAD_BYTES: "100"})
    assert recorded.outcome() == baseline.outcome()
    run = read_only_run(recorded.wandb_dir)
    assert "add" not in [artifact["name"] for artifact in run.artifacts]
    assert run.exit_code == 0 and run.summary["add.Output"] == 3.75
    skipped = [line for line in recorded.shim_lines if "component file" in line]
    assert len(skipped) == 1 and "over the upload limit" in skipped[0]


@pytest.mark.parametrize("spec", ["", "not json", "[1, 2]"])
def test_no_or_unusable_component_spec_saves_nothing_and_says_nothing(component, spec):
    case = component("v2-add")
    recorded = case.run(shim=True, extra_env={contract.COMPONENT_SPEC: spec})
    assert recorded.returncode == 0, recorded.stderr
    run = read_only_run(recorded.wandb_dir)
    assert [a["type"] for a in run.artifacts if a["type"] == runextras.COMPONENT_FILE_TYPE] == []
    assert len(recorded.shim_lines) == 1 and "wandb sync" in recorded.shim_lines[0]


# --- online, against a local server that answers what an online run asks ---------------------------
FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # shaped like a key, valid nowhere


def _online_env(server_url: str, run_id: str, **extra: str) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        contract.WANDB_MODE: None,
        contract.WANDB_BASE_URL: server_url,
        contract.WANDB_API_KEY: FAKE_KEY,
        contract.WANDB_ENTITY: "acme",
        contract.WANDB_PROJECT: "v2-add",
        contract.WANDB_RUN_ID: run_id,
        contract.INIT_TIMEOUT: "30",
        contract.COMPONENT_SPEC: "",  # no artifact: the local server does not serve artifacts
        "WANDB_ERROR_REPORTING": "false",
    }
    env.update(extra)
    return env


def test_online_run_prints_its_link_once(component):
    case = component("v2-add")
    baseline = case.run(shim=False)
    with LocalWandbServer() as server:
        recorded = case.run(shim=True, extra_env=_online_env(server.url, "kfp-0nl1ne0000000001"))
        operations = server.operations()
    assert recorded.outcome() == baseline.outcome()
    assert recorded.shim_lines == [f"wandb-kfp-shim: W&B run: {server.url}/acme/v2-add/runs/kfp-0nl1ne0000000001"]
    assert "mutation UpsertBucket" in operations  # the run really started online (and finished: files)
    assert "mutation CreateRunFiles" in operations
    assert list(recorded.wandb_dir.glob("wandb/offline-run-*")) == []


def test_online_run_link_switched_off(component):
    case = component("v2-add")
    with LocalWandbServer() as server:
        env = _online_env(server.url, "kfp-0nl1ne0000000002", **{contract.RUN_LINK: "off"})
        recorded = case.run(shim=True, extra_env=env)
        operations = server.operations()
    assert recorded.returncode == 0, recorded.stderr
    assert "mutation UpsertBucket" in operations
    assert recorded.shim_lines == []


def test_online_run_with_the_vendored_wandb_0_18_on_python37_prints_its_link(tmp_path):
    """The same with the wandb vendored for CPython 3.7 (0.18.7), on a KFP v1 program."""
    from tests.fixtures.pods import index_entry
    from tests.shim.conftest import ComponentCase
    from tests.shim.support import install_shim
    from tests.support.venvs import ensure_venv

    try:
        python = ensure_venv("s2-bare", "3.7", [])
    except LookupError as error:
        pytest.skip(str(error))
    shim = install_shim(tmp_path / "wandb-shim", with_payload=True)
    case = ComponentCase("v1-add", python, shim, tmp_path / "case", index_entry("v1-add"))
    baseline = case.run(shim=False)
    with LocalWandbServer() as server:
        env = _online_env(server.url, "kfp-0nl1ne0000000037", **{contract.WANDB_PROJECT: "v1-add"})
        recorded = case.run(shim=True, extra_env=env)
        operations = server.operations()
    assert recorded.outcome() == baseline.outcome()
    assert recorded.shim_lines == [f"wandb-kfp-shim: W&B run: {server.url}/acme/v1-add/runs/kfp-0nl1ne0000000037"]
    assert "mutation UpsertBucket" in operations
