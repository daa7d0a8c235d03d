"""The webhook image built from the Dockerfile, run as the Helm chart runs it.

The Deployment is rendered by the chart itself (helm template, certificates from a Secret: `provided`
mode) and its pod spec is run by podman as a kubelet would: UID 65532, read-only root filesystem, all
capabilities dropped, no privilege escalation, the config file from the ConfigMap, tls.crt/tls.key from
the Secret (mode 0440, group fsGroup), an emptyDir at /tmp. The server must answer /healthz, /readyz and a
real AdmissionReview over TLS, verified against the CA for the Service's DNS name. Then the init container
the webhook injects runs from the same image and copies the shim into an emptyDir.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.container.components import CLI, SHIM_INIT_CONTAINER, SHIM_VOLUME, preview
from tests.container.images import WEBHOOK_REPOSITORY, BuiltImage, payload_dir
from tests.container.podman import podman, remove_container, run_in, wait_for
from tests.container.pods import PodObjects, PodSandbox
from tests.fixtures.pods import load_pod
from tests.support.reviews import admission_review

TLS_CLIENT = Path(__file__).with_name("tls_client.py")
IMAGE_SHIM = "/opt/wandb-kfp-webhook/shim"
COMPLETE_MARKER = ".wandb-kfp-shim-complete"
SECRET_NAME = "wkw-serving-tls"
CONTAINER_PORT = 8443
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


@pytest.fixture(scope="module")
def helm() -> Path:
    from tests.e2e.binaries import BinariesUnavailable, ensure_helm

    try:
        return ensure_helm(build=os.environ.get("WKW_E2E_BUILD", "1") != "0")
    except BinariesUnavailable as error:
        pytest.skip(f"helm unavailable (it renders the Deployment this test runs): {error}")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA and a serving certificate for the Service's DNS name, written by the product's CLI."""
    from tests.chart.render import NAMESPACE, RELEASE

    service = f"{RELEASE}-wandb-kfp-webhook"
    dns = f"{service}.{NAMESPACE}.svc"
    out = tmp_path_factory.mktemp("certs")
    subprocess.run([str(CLI), "certs", "generate", "--dns", dns, "--out", str(out)], check=True, capture_output=True)
    return {"dir": out, "dns": dns, "service": service}


@pytest.fixture(scope="module")
def rendered(webhook_image: BuiltImage, helm: Path, certificates: dict[str, Any]):  # type: ignore[no-untyped-def]
    from tests.chart.render import template

    ca = (certificates["dir"] / "ca.crt").read_bytes()
    tag = webhook_image.name.rsplit(":", 1)[1]
    return template(
        helm,
        set_values=[
            f"image.repository={WEBHOOK_REPOSITORY}",
            f"image.tag={tag}",
            "image.pullPolicy=Never",
            "certificates.mode=provided",
            f"certificates.provided.secretName={SECRET_NAME}",
            f"certificates.provided.caBundle={base64.b64encode(ca).decode()}",
        ],
    )


class Served:
    """The webhook container of the chart's Deployment, running detached."""

    def __init__(self, sandbox: PodSandbox, container_id: str, certificates: dict[str, Any]) -> None:
        self.sandbox = sandbox
        self.container_id = container_id
        self.certificates = certificates

    @property
    def pid(self) -> int:
        return int(podman("inspect", "--format", "{{.State.Pid}}", self.container_id).stdout.strip())

    def running(self) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.container_id, check=False)
        return state.stdout.strip() == "true"

    def requests(self, *requests: dict[str, Any], wait_seconds: float = 0) -> list[dict[str, Any]]:
        """HTTPS requests from inside the container's network namespace (tls_client.py under nsenter)."""
        spec = {
            "port": CONTAINER_PORT,
            "ca": str(self.certificates["dir"] / "ca.crt"),
            "server_name": self.certificates["dns"],
            "wait_seconds": wait_seconds,
            "requests": list(requests),
        }
        result = subprocess.run(
            ["nsenter", "--target", str(self.pid), "--net", "--", sys.executable, str(TLS_CLIENT)],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert result.returncode == 0, f"{result.stderr}\ncontainer log:\n{self.logs()}"
        answers: list[dict[str, Any]] = json.loads(result.stdout)
        return answers

    def logs(self) -> str:
        result = podman("logs", self.container_id, check=False)
        return result.stdout + result.stderr


@pytest.fixture(scope="module")
def served(webhook_image: BuiltImage, rendered, certificates: dict[str, Any], tmp_path_factory) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    from tests.chart.render import NAMESPACE

    deployment = rendered.one("Deployment")
    config_map = rendered.one("ConfigMap")
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{deployment['metadata']['name']}-7d9c8b6f5-x2x4q",
            "namespace": NAMESPACE,
            "labels": template["metadata"]["labels"],
        },
        "spec": template["spec"],
    }
    tls = certificates["dir"]
    objects = PodObjects(
        secrets={SECRET_NAME: {"tls.crt": (tls / "tls.crt").read_bytes(), "tls.key": (tls / "tls.key").read_bytes()}},
        config_maps={config_map["metadata"]["name"]: config_map["data"]},
    )
    sandbox = PodSandbox(pod, tmp_path_factory.mktemp("webhook-pod"), objects)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["webhook"], "provided mode: no sidecar"
    assert "initContainers" not in pod["spec"], "provided mode: no certificate init container"
    args = sandbox.run_args("webhook", detach=True)
    container_id = podman("run", *args).stdout.strip().splitlines()[-1]
    server = Served(sandbox, container_id, certificates)
    try:
        wait_for(server.running, "the webhook container running", seconds=60)
        yield server
    finally:
        remove_container(container_id)


def test_image_metadata_is_what_the_chart_expects(webhook_image: BuiltImage) -> None:
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", webhook_image.name).stdout)
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["wandb-kfp-webhook"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["WANDB_KFP_PAYLOAD_DIR"] == IMAGE_SHIM
    assert env["PATH"].startswith("/opt/wandb-kfp-webhook/venv/bin:/usr/local/sbin:")
    assert "8443/tcp" in config.get("ExposedPorts", {})


def test_serves_health_and_admission_reviews_as_the_chart_runs_it(
    served: Served, certificates: dict[str, Any], tmp_path: Path
) -> None:
    pod = load_pod("v2-train")
    pod["metadata"].setdefault("labels", {})["wandb.ai/inject"] = "true"  # the pod opts in (no namespace watch)
    review = admission_review(pod, uid="container-review-1")
    health, ready, answer = served.requests(
        {"path": "/healthz"},
        {"path": "/readyz"},
        {"method": "POST", "path": "/mutate", "body": json.dumps(review)},
        wait_seconds=120,
    )
    assert health["status"] == 200 and json.loads(health["body"]) == {"status": "ok"}, health
    assert ready["status"] == 200, ready
    assert answer["status"] == 200, answer
    response = json.loads(answer["body"])["response"]
    assert response["uid"] == "container-review-1"
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    served_patch = json.loads(base64.b64decode(response["patch"]))

    # The same review through `preview --review` with the chart's settings file gives the same patch.
    config = served.sandbox.volume_dir("config") / "config.yaml"
    source = tmp_path / "review.yaml"
    source.write_text(yaml.safe_dump(review))
    # The payload the image was built from: the narrowed copies' sizeLimits come from its manifest.
    previewed = subprocess.run(
        [str(CLI), "preview", str(source), "--review", "--no-namespace-labels", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "WANDB_KFP_PAYLOAD_DIR": str(payload_dir())},
    )
    assert previewed.returncode == 0, previewed.stderr
    expected = json.loads(previewed.stdout)["response"]
    assert served_patch == json.loads(base64.b64decode(expected["patch"]))
    assert any(op["path"] == "/spec/initContainers/-" for op in served_patch), "the shim init container is injected"


def test_server_runs_as_65532_without_capabilities_on_a_read_only_root(served: Served) -> None:
    status = Path(f"/proc/{served.pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split()[:2] == ["65532", "65532"]
    assert fields["Gid"].split()[:2] == ["65532", "65532"]
    assert "65532" in fields["Groups"].split(), "fsGroup is a supplementary group"
    assert int(fields["CapEff"].strip(), 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2", "filtered by podman's default profile (RuntimeDefault)"
    # Even root inside the container cannot write to the image's filesystem; the emptyDir at /tmp is writable.
    denied = podman("exec", "--user", "0", served.container_id, "touch", "/opt/wandb-kfp-webhook/probe", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied
    allowed = podman("exec", served.container_id, "sh", "-c", "touch /tmp/probe && rm /tmp/probe", check=False)
    assert allowed.returncode == 0, allowed.stderr
    assert served.running()
    assert "Traceback" not in served.logs()


def _quantity(text: str) -> int:
    for suffix, factor in UNITS.items():
        if text.endswith(suffix):
            return int(text[: -len(suffix)]) * factor
    return int(text)


#: Files (each inode once: hardlinks are shared across Python minors) and their bytes, the marker left out
#: (it names where it was installed). Run on the host for the copy and in the image for the original.
_FILE_FIGURES = """
import os, sys
seen, total = set(), 0
paths = [os.path.join(sys.argv[1], part) for part in (sys.argv[2:] or [""])]
files = [(os.path.dirname(path), [os.path.basename(path)]) for path in paths if os.path.isfile(path)]
walks = [(root, names) for path in paths for root, _dirs, names in os.walk(path)]
for root, names in files + walks:
    for name in names:
        info = os.lstat(os.path.join(root, name))
        if name != ".wandb-kfp-shim-complete" and (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_size
print(len(seen), total)
"""


def _file_figures(path: Path, *parts: str) -> tuple[int, int]:
    """(files, bytes) under path (or under those parts of it), hardlinked files counted once."""
    command = [sys.executable, "-c", _FILE_FIGURES, str(path), *parts]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    count, total = out.stdout.split()
    return int(count), int(total)


def test_init_container_installs_the_shim_into_the_pods_emptydir(
    webhook_image: BuiltImage, webhook_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutated = preview(load_pod("v1-count-lines"), webhook_config, tmp_path)
    init = next(c for c in mutated["spec"]["initContainers"] if c["name"] == SHIM_INIT_CONTAINER)
    assert init["image"] == webhook_image.name
    sandbox = PodSandbox(mutated, tmp_path / "pod")
    first = sandbox.run(SHIM_INIT_CONTAINER)
    assert first.returncode == 0, first.stderr
    shim = sandbox.volume_dir(SHIM_VOLUME)

    # The pod's image is python:3.7: the init container copies that minor's vendored wandb only.
    assert init["command"][-2:] == ["--python", "3.7"], init["command"]
    assert (shim / "bootstrap" / "sitecustomize.py").is_file()
    manifest = json.loads((shim / "site" / "manifest.json").read_text())
    assert "3.7" in manifest["minors"], "the vendored wandb is copied too"
    assert sorted(path.name for path in (shim / "site").iterdir() if path.is_dir()) == ["py3.7"]
    parts = ("bootstrap", "lib", "site/py3.7", "site/manifest.json")
    in_image = run_in(webhook_image.name, "-c", _FILE_FIGURES, IMAGE_SHIM, *parts, entrypoint="python3").split()
    files, copied = _file_figures(shim)
    assert (files, copied) == tuple(int(n) for n in in_image), "every file of that minor copied, links kept"
    volume = next(v for v in mutated["spec"]["volumes"] if v["name"] == SHIM_VOLUME)
    assert copied < _quantity(volume["emptyDir"]["sizeLimit"]), "the kubelet would evict the pod"
    for path in shim.rglob("*"):  # the emptyDir itself belongs to the kubelet (root, 0777)
        info = path.lstat()
        assert info.st_uid == 65532, path
        if not stat.S_ISLNK(info.st_mode):
            assert info.st_mode & stat.S_IROTH and not info.st_mode & stat.S_IWOTH, path

    # A restarted pod runs the init container again over the same emptyDir: still exit 0, same shim.
    again = sandbox.run(SHIM_INIT_CONTAINER)
    assert again.returncode == 0, again.stderr
    assert _file_figures(shim) == (files, copied)

    # Its memory: the peak RSS of the same command in a fresh pod stays under the injected memory limit
    # (this machine's podman cannot enforce limits: its cgroup v1 hierarchy has no memory controller).
    fresh = PodSandbox(preview(load_pod("v1-count-lines"), webhook_config, tmp_path / "fresh"), tmp_path / "pod2")
    measured = fresh.run(SHIM_INIT_CONTAINER, argv=["python3", "-c", _PEAK_RSS, *init["command"]])
    assert measured.returncode == 0, measured.stderr
    peak_kib = int(measured.stderr.strip().splitlines()[-1].split("=")[1])
    limit = _quantity(init["resources"]["limits"]["memory"])
    assert peak_kib * 1024 < limit
    with capsys.disabled():
        print(
            f"\n[container] init container: first copy {first.seconds:.1f} s, rerun {again.seconds:.1f} s, "
            f"peak RSS {peak_kib / 1024:.0f} MiB (limit {limit / 2**20:.0f} MiB); "
            f"shim in the emptyDir: {files} files, {copied} bytes ({copied / 2**20:.0f} MiB)"
        )
    shutil.rmtree(tmp_path / "pod", ignore_errors=True)
    shutil.rmtree(tmp_path / "pod2", ignore_errors=True)


#: Runs a command and prints its peak resident set size (KiB) as the last stderr line.
_PEAK_RSS = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print('peak-rss-kib=%d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(code)"
)
