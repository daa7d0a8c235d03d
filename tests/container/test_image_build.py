"""image-build.sh, the script every image build runs, run here into a temporary prefix.

No Docker engine exists here, so the image's contents are proven by running its one build step for real
(venv, pip install of the project, shim install from the vendored-wandb payload) and checking the layout
the Dockerfile copies. The payload is the cached one the shim tests build (set WKW_PAYLOAD_FROM to use
another, or WKW_IMAGE_BUILD_FULL=1 to run `shim build-payload` too, which takes many minutes).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from webhook.shim import contract
from webhook.shim_build.install import COMPLETE_MARKER, is_complete

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "image-build.sh"
IMAGE_PREFIX = "/opt/wandb-kfp-webhook"

pytestmark = pytest.mark.timeout(3600)


def _payload_from() -> str | None:
    if os.environ.get("WKW_IMAGE_BUILD_FULL") == "1":
        return None
    if os.environ.get("WKW_PAYLOAD_FROM"):
        return os.environ["WKW_PAYLOAD_FROM"]
    from tests.shim.support import payload_dir  # builds the cached payload on first use

    return str(payload_dir())


def _unique_bytes(root: Path) -> int:
    """What `du -sb` counts: each inode once (hardlinks shared across Python minors), plus directories."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        total += info.st_size
    return total


def _disk_bytes(root: Path) -> int:
    """What `du -s` counts: allocated blocks, each inode once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
    return total


def _shim_install(prefix: Path, dest: Path, *flags: str) -> None:
    """What the injected init container runs: the built venv's `shim install DEST`, payload from the image."""
    result = subprocess.run(
        [str(prefix / "venv" / "bin" / "wandb-kfp-webhook"), "shim", "install", str(dest), *flags],
        capture_output=True,
        text=True,
        env={**os.environ, contract.PAYLOAD_DIR_ENV: str(prefix / "shim")},
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module", params=["opt/wandb-kfp-webhook"], ids=["prefix"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str | None]:
    prefix = tmp_path_factory.mktemp("image") / request.param
    payload = _payload_from()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WANDB_", "WKW_PAYLOAD"))}
    command = [str(SCRIPT), "--prefix", str(prefix), "--python", sys.executable]
    if payload:
        command += ["--payload-from", payload]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=3000)
    assert result.returncode == 0, f"image-build.sh failed:\n{result.stderr[-4000:]}"
    return prefix, result.stdout, payload


def test_prefix_holds_only_the_venv_and_the_laid_out_shim(built: tuple[Path, str, str | None]) -> None:
    prefix, _stdout, _payload = built
    assert sorted(path.name for path in prefix.iterdir()) == ["shim", "venv"]
    assert not (prefix / ".payload-build").exists()


def test_venv_has_the_cli_and_not_the_sources(built: tuple[Path, str, str | None]) -> None:
    prefix, _stdout, _payload = built
    cli = prefix / "venv" / "bin" / "wandb-kfp-webhook"
    result = subprocess.run([str(cli), "--help"], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0 and "serve" in result.stdout and "certs" in result.stdout
    located = subprocess.run(
        [str(prefix / "venv" / "bin" / "python"), "-c", "import webhook, sys; print(webhook.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd="/",
    ).stdout.strip()
    assert located.startswith(str(prefix / "venv")), "the project must be installed, not linked to the checkout"


def test_shim_layout_is_complete_and_world_readable(built: tuple[Path, str, str | None]) -> None:
    prefix, _stdout, _payload = built
    shim = prefix / "shim"
    assert is_complete(shim)
    assert sorted(p.name for p in (shim / contract.BOOTSTRAP_SUBDIR).iterdir()) == ["sitecustomize.py"]
    package = shim / contract.LIB_SUBDIR / contract.SHIM_PACKAGE_NAME
    assert (package / "contract.py").is_file()
    assert not (package / "install.py").exists() and not (package / "payload.py").exists()
    manifest = json.loads((shim / contract.SITE_SUBDIR / "manifest.json").read_text())
    assert manifest["minors"], "the payload vendors wandb for at least one Python minor"
    for minor, entry in manifest["minors"].items():
        assert (shim / contract.SITE_SUBDIR / f"py{minor}" / "wandb" / "__init__.py").is_file(), minor
        assert entry["wandb"]
    for path in [shim, *shim.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        assert mode & stat.S_IROTH, path
        assert not mode & stat.S_IWOTH, path
        if stat.S_ISDIR(mode):
            assert mode & stat.S_IXOTH, path


def test_init_container_copy_from_the_image_shim_is_identical(
    built: tuple[Path, str, str | None], tmp_path: Path
) -> None:
    """What the injected init container does: `shim install /wandb-shim` with the image's env."""
    prefix, _stdout, _payload = built
    dest = tmp_path / "wandb-shim"
    _shim_install(prefix, dest)
    image_marker = json.loads((prefix / "shim" / COMPLETE_MARKER).read_text())
    copy_marker = json.loads((dest / COMPLETE_MARKER).read_text())
    assert copy_marker["stamp"] == image_marker["stamp"]
    assert copy_marker["wandb"] == image_marker["wandb"] and copy_marker["wandb"]
    assert (dest / contract.SITE_SUBDIR / "manifest.json").read_bytes() == (
        prefix / "shim" / contract.SITE_SUBDIR / "manifest.json"
    ).read_bytes()


def test_reports_the_payload_size(built: tuple[Path, str, str | None], capsys: pytest.CaptureFixture[str]) -> None:
    prefix, stdout, payload = built
    found = re.search(r"^payload-size-bytes=(\d+)$", stdout, flags=re.MULTILINE)
    assert found, stdout
    size = int(found.group(1))
    assert size == _unique_bytes(prefix / "shim")
    apparent = sum(p.lstat().st_size for p in (prefix / "shim").rglob("*") if p.is_file())
    with capsys.disabled():
        print(
            f"\n[image-build] shim with vendored wandb: {size} bytes ({size / 2**20:.1f} MiB) on disk, "
            f"{apparent / 2**20:.1f} MiB without hardlink sharing; payload from {payload or 'a fresh build'}"
        )


def test_dockerfile_runs_the_script_and_points_the_init_container_at_the_shim() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", dockerfile, flags=re.MULTILINE)
    assert dockerfile.count("FROM ${PYTHON_IMAGE}") == 2, "multi-stage, same slim base for build and final"
    assert f"RUN ./image-build.sh --prefix {IMAGE_PREFIX}" in dockerfile
    assert f"WANDB_KFP_PAYLOAD_DIR={IMAGE_PREFIX}/shim" in dockerfile
    assert f"PATH={IMAGE_PREFIX}/venv/bin:" in dockerfile
    assert re.search(r"^USER 65532:65532$", dockerfile, flags=re.MULTILINE)
    final_stage = dockerfile.split("FROM ${PYTHON_IMAGE}\n", 1)[1]
    assert "RUN " not in final_stage, "the final stage only copies: no compilers or build tools enter it"
    # The offline build's arguments (make image) default to empty: a plain build downloads and builds.
    build_stage = dockerfile.split("FROM ${PYTHON_IMAGE}\n", 1)[0]
    for argument in ("WKW_WHEELHOUSE", "WKW_PAYLOAD_FROM"):
        assert f'ARG {argument}=""' in build_stage and argument not in final_stage
    # The chart's shim_image_layout_path default is where the image holds the shim.
    from webhook.admission.config import Settings

    assert Settings.model_fields["shim_image_layout_path"].default == f"{IMAGE_PREFIX}/shim"
    # Everything the build stage copies survives .dockerignore.
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for needed in ("pyproject.toml", "README.md", "image-build.sh", "webhook/"):
        assert f"!{needed}" in ignore


@pytest.mark.parametrize(("python", "compat"), [("3.7", False), ("3.11", False), ("3.11", True)])
def test_narrowed_init_container_copy_fits_the_size_limit_the_server_computes(
    built: tuple[Path, str, str | None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python: str, compat: bool
) -> None:
    """`shim install /wandb-shim --python 3.X [--compat]` from the image's shim copies that minor only, and
    the emptyDir sizeLimit the webhook derives from the same image's manifest holds it (du counts)."""
    from webhook.admission import pythonimage

    prefix, _stdout, _payload = built
    dest = tmp_path / "wandb-shim"
    flags = [contract.INSTALL_PYTHON_FLAG, python] + ([contract.INSTALL_COMPAT_FLAG] if compat else [])
    _shim_install(prefix, dest, *flags)
    expected = {"manifest.json", f"py{python}"}
    if compat and (prefix / "shim" / contract.SITE_SUBDIR / f"py{python}{contract.COMPAT_SITE_SUFFIX}").is_dir():
        expected.add(f"py{python}{contract.COMPAT_SITE_SUFFIX}")
    assert {p.name for p in (dest / contract.SITE_SUBDIR).iterdir()} == expected
    monkeypatch.setenv(contract.PAYLOAD_DIR_ENV, str(prefix / "shim"))
    limit = pythonimage.size_limit(python, compat, "1Gi")
    assert limit.endswith("Mi")
    used = _disk_bytes(dest)  # what the kubelet measures against sizeLimit: blocks, each inode once
    assert used <= int(limit[:-2]) * 1024 * 1024
    full = _disk_bytes(prefix / "shim")
    print(f"narrowed copy py{python}{'+compat' if compat else ''}: {used} of {full} bytes, sizeLimit {limit}")
