"""Whatever goes wrong on the W&B side or inside the shim, the component's outcome is the one it has
without the shim: exit code, stdout (byte-identical), stderr (minus `wandb-kfp-shim:` lines), output files.

Faults: a bug at each shim stage (WANDB_KFP_SHIM_FAULT), wandb failing to import, no API key, W&B
unreachable (closed port), W&B silent (accepts, never answers), W&B refusing the key (HTTP 401).
Each on a succeeding and a failing real component (v2-divide, divisor 5 and 0; v1 for the stage faults).
"""

from __future__ import annotations

import http.server
import socket
import threading
import uuid
from pathlib import Path

import pytest

from tests.shim.conftest import executor_parameter_rewrite, v1_argument_rewrite
from tests.shim.wandb_reader import find_run_files, read_only_run
from webhook.shim import contract
from webhook.shim.faults import FAULT_ENV, STAGES

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # shaped like a key, valid nowhere
#: Short bound for the online start so the network-fault tests stay quick.
INIT_TIMEOUT_SECONDS = "8"
#: Stages after which the run still exists and finishes (so it is on disk, possibly without some data).
STAGES_WITH_A_RUN = ("run_link", "component_file", "inputs", "lineage", "outputs", "failure")


def _divide_case(component, kind: str, divisor: int):
    if kind == "v2":
        return component("v2-divide", rewrite=executor_parameter_rewrite("divisor", divisor))
    return component("v1-divide", rewrite=v1_argument_rewrite("--divisor", str(divisor)))


@pytest.mark.parametrize("divisor", [5, 0], ids=["succeeds", "raises"])
@pytest.mark.parametrize("kind", ["v2", "v1"])
@pytest.mark.parametrize("stage", STAGES)
def test_shim_bug_at_any_stage_leaves_outcome_unchanged(component, stage, kind, divisor):
    case = _divide_case(component, kind, divisor)
    baseline = case.run(shim=False)
    faulty = case.run(shim=True, extra_env={FAULT_ENV: stage})

    assert baseline.returncode == (0 if divisor else 1)
    assert faulty.outcome() == baseline.outcome()
    if (stage == "failure" and divisor) or (stage == "outputs" and not divisor):
        return  # failure is recorded only for a raising component, outputs only for a succeeding one
    assert any(stage in line or "ShimFault" in line for line in faulty.shim_lines), faulty.shim_lines
    if stage in STAGES_WITH_A_RUN:
        run = read_only_run(faulty.wandb_dir)
        assert run.exit_code == (0 if divisor else 1)


def test_wandb_import_failure_leaves_outcome_unchanged(component, tmp_path):
    broken = tmp_path / "broken-site"
    (broken / "wandb").mkdir(parents=True)
    (broken / "wandb" / "__init__.py").write_text("raise ImportError('this wandb is broken on purpose')\n")
    case = _divide_case(component, "v2", 5)
    baseline = case.run(shim=False, extra_env={"PYTHONPATH": str(broken)})
    shimmed_path = contract.bootstrap_dir(str(case.shim_dir)) + ":" + str(broken)
    recorded = case.run(shim=True, extra_env={"PYTHONPATH": shimmed_path})
    assert recorded.outcome() == baseline.outcome()
    assert find_run_files(recorded.wandb_dir) == []
    assert len(recorded.shim_lines) == 1 and "wandb failed to import" in recorded.shim_lines[0]


class _Unauthorised(http.server.BaseHTTPRequestHandler):
    """Answers every request 401, as W&B does for a key it does not know."""

    def _refuse(self) -> None:
        body = b'{"errors": [{"message": "user is not logged in"}]}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _refuse

    def log_message(self, *args) -> None:  # keep the test output clean
        return


@pytest.fixture
def w_and_b_endpoint(request):
    """A local W&B base URL that is `closed` (refuses), `silent` (accepts, never answers) or `rejects` (401)."""
    mode = request.param
    if mode == "closed":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        yield mode, f"http://127.0.0.1:{port}"
        return
    if mode == "silent":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield mode, f"http://127.0.0.1:{listener.getsockname()[1]}"
        listener.close()
        return
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorised)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield mode, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _online_env(base_url: str | None, key: str | None) -> dict[str, str | None]:
    """What the webhook gives a pod, including its own run id (which the offline fallback must keep)."""
    return {
        contract.WANDB_RUN_ID: "kfp-" + uuid.uuid4().hex[:16],
        contract.WANDB_MODE: None,
        contract.WANDB_BASE_URL: base_url,
        contract.WANDB_API_KEY: key,
        contract.INIT_TIMEOUT: INIT_TIMEOUT_SECONDS,
    }


def _assert_saved_offline_with_one_hint(recorded, exit_code: int) -> None:
    run = read_only_run(recorded.wandb_dir)
    assert run.exit_code == exit_code
    assert run.config["dividend"] == 17
    assert len(recorded.shim_lines) == 1, recorded.shim_lines
    hint = recorded.shim_lines[0]
    run_dir = str(Path(run.path).parent)
    assert hint.endswith("upload it with: wandb sync " + run_dir)
    assert FAKE_KEY not in recorded.stderr and FAKE_KEY not in recorded.stdout


@pytest.mark.parametrize("w_and_b_endpoint", ["closed", "silent", "rejects"], indirect=True)
@pytest.mark.parametrize("divisor", [5, 0], ids=["succeeds", "raises"])
def test_unusable_w_and_b_falls_back_offline_and_keeps_outcome(component, w_and_b_endpoint, divisor):
    _mode, base_url = w_and_b_endpoint
    case = _divide_case(component, "v2", divisor)
    baseline = case.run(shim=False)
    pod_env = _online_env(base_url, FAKE_KEY)
    recorded = case.run(shim=True, extra_env=pod_env)
    assert recorded.outcome() == baseline.outcome()
    _assert_saved_offline_with_one_hint(recorded, 0 if divisor else 1)
    assert read_only_run(recorded.wandb_dir).run_id == pod_env[contract.WANDB_RUN_ID]


@pytest.mark.parametrize("kind", ["v2", "v1"])
def test_no_api_key_records_offline_and_says_how_to_sync(component, kind):
    case = _divide_case(component, kind, 5)
    baseline = case.run(shim=False)
    recorded = case.run(shim=True, extra_env=_online_env(None, None))
    assert recorded.outcome() == baseline.outcome()
    _assert_saved_offline_with_one_hint(recorded, 0)
    assert "no W&B API key" in recorded.shim_lines[0]


def test_shim_switched_off_does_nothing(component):
    case = _divide_case(component, "v2", 5)
    baseline = case.run(shim=False)
    off = case.run(shim=True, extra_env={contract.SHIM_SWITCH: "off"})
    assert off.outcome() == baseline.outcome()
    assert off.shim_lines == [] and find_run_files(off.wandb_dir) == []
