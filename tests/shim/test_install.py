"""`shim install`: the layout the init container writes, idempotence, recovery from a half copy,
hardlinks kept from the payload, and the CLI words the lead's `wandb-kfp-webhook shim` passes on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.shim import support
from webhook.shim import contract
from webhook.shim_build.install import COMPLETE_MARKER, PAYLOAD_ENV, install, is_complete, main


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, inode) of every file under root."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            info = path.stat()
            found[str(path.relative_to(root))] = (info.st_size, info.st_ino)
    return found


def test_install_without_payload_lays_out_bootstrap_and_package(tmp_path, monkeypatch):
    monkeypatch.setenv(PAYLOAD_ENV, str(tmp_path / "no-payload"))
    result = install(tmp_path / "shim")
    shim = tmp_path / "shim"
    assert sorted(os.listdir(shim / contract.BOOTSTRAP_SUBDIR)) == ["sitecustomize.py"]
    package = shim / contract.LIB_SUBDIR / contract.SHIM_PACKAGE_NAME
    names = {path.name for path in package.rglob("*")}
    assert {"__init__.py", "contract.py", "wandb_import.py"} <= names
    assert not names & {"install.py", "payload.py", "__pycache__"}  # webhook-only files stay out of pods
    assert not (shim / contract.SITE_SUBDIR).exists()
    assert result["payload"] is None and result["wandb"] == {} and not result["reused"]
    assert result["files"] == len(tree(shim)) - 1  # every file but the completion marker
    assert is_complete(shim)


def test_installed_package_imports_as_wandb_kfp_shim(tmp_path):
    """The copy is a self-contained package (relative imports only) under its pod name."""
    shim = support.install_shim(tmp_path / "shim", with_payload=False)
    probe = (
        "import sys; sys.path.append(sys.argv[1]); "
        "from wandb_kfp_shim import contract, wandb_import; "
        "print(contract.SHIM_PACKAGE_NAME, wandb_import.vendored_dir())"
    )
    done = support.run_python(
        support.find_python("3.8") or "python3", ["-c", probe, str(shim / "lib")], support.shim_env(shim, debug=False)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [contract.SHIM_PACKAGE_NAME, str(shim / contract.SITE_SUBDIR / "py3.8")]


def test_install_is_idempotent(tmp_path):
    shim = support.install_shim(tmp_path / "shim", with_payload=False)
    before = {path: os.stat(shim / path).st_mtime_ns for path in tree(shim)}
    support.install_shim(shim, with_payload=False)
    after = {path: os.stat(shim / path).st_mtime_ns for path in tree(shim)}
    assert after == before


def test_half_copied_install_is_redone(tmp_path):
    """A copy killed mid-way has no completion marker: the next run replaces it whole."""
    shim = support.install_shim(tmp_path / "shim", with_payload=False)
    reference = {path: size for path, (size, _inode) in tree(shim).items()}
    (shim / COMPLETE_MARKER).unlink()
    (shim / contract.LIB_SUBDIR / contract.SHIM_PACKAGE_NAME / "contract.py").write_text("truncat")
    (shim / contract.BOOTSTRAP_SUBDIR / "stray.py").write_text("x = 1\n")
    assert not is_complete(shim)
    support.install_shim(shim, with_payload=False)
    assert {path: size for path, (size, _inode) in tree(shim).items()} == reference
    assert is_complete(shim)


def test_install_with_payload_keeps_hardlinks(tmp_path):
    payload = support.payload_dir()
    manifest = json.loads((payload / contract.SITE_SUBDIR / "manifest.json").read_text())
    result = install(tmp_path / "shim", payload)
    site = tmp_path / "shim" / contract.SITE_SUBDIR
    files = tree(site)
    unique_bytes = sum({inode: size for size, inode in files.values()}.values())
    assert unique_bytes == manifest["bytes_after_dedupe"] + (site / "manifest.json").stat().st_size
    assert len(files) == manifest["unique_files"] + manifest["linked_files"] + 1
    assert result["hardlinks"] == manifest["linked_files"]
    assert result["wandb"] == {minor: entry["wandb"] for minor, entry in manifest["minors"].items()}
    # wandb's Go core is one file for all minors pinned to the same wandb
    cores = {
        minor: (site / f"py{minor}" / "wandb" / "bin" / "wandb-core").stat()
        for minor, version in result["wandb"].items()
        if version == "0.31.0"
    }
    assert len({info.st_ino for info in cores.values()}) == 1
    assert all(info.st_mode & 0o111 for info in cores.values())  # still executable


def test_payload_location_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv(PAYLOAD_ENV, str(support.payload_dir()))
    result = install(tmp_path / "shim")
    assert result["payload"] == str(support.payload_dir())
    assert (tmp_path / "shim" / contract.SITE_SUBDIR / "manifest.json").is_file()


def test_explicit_payload_that_is_not_one_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        install(tmp_path / "shim", tmp_path)


def test_cli_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(PAYLOAD_ENV, str(tmp_path / "none"))
    assert main(["install", str(tmp_path / "shim")]) == 0
    assert "installed shim in" in capsys.readouterr().out
    assert main(["install", str(tmp_path / "shim")]) == 0
    assert "already installed" in capsys.readouterr().out
    assert main(["install", str(tmp_path / "other"), "--payload", str(tmp_path / "missing")]) == 1
    assert "is not a payload" in capsys.readouterr().err


def _site_unique_bytes(site: Path) -> int:
    return sum({inode: size for size, inode in tree(site).values()}.values())


@pytest.mark.parametrize(("python", "compat"), [("3.7", False), ("3.11", False), ("3.11", True), ("3.9", True)])
def test_install_for_one_minor_copies_its_sites_only(tmp_path, python, compat):
    payload = support.payload_dir()
    manifest = json.loads((payload / contract.SITE_SUBDIR / "manifest.json").read_text())
    entry = manifest["minors"][python]
    result = install(tmp_path / "shim", payload, python=python, compat=compat)
    site = tmp_path / "shim" / contract.SITE_SUBDIR
    names = {"manifest.json", f"py{python}"}
    if compat and "compat" in entry:
        names.add(f"py{python}{contract.COMPAT_SITE_SUFFIX}")
    assert {path.name for path in site.iterdir()} == names
    assert result["wandb"] == {python: entry["wandb"]} and result["python"] == python
    expected = entry["install"]["compat_bytes" if compat else "bytes"]
    assert _site_unique_bytes(site) == expected + (site / "manifest.json").stat().st_size
    if compat and "compat" in entry:
        assert result["hardlinks"] > 0  # files the compat site shares with py3.X stay one file in the pod


def test_install_for_a_minor_without_vendored_wandb_copies_the_manifest_only(tmp_path):
    result = install(tmp_path / "shim", support.payload_dir(), python="3.6")
    assert [path.name for path in (tmp_path / "shim" / contract.SITE_SUBDIR).iterdir()] == ["manifest.json"]
    assert result["wandb"] == {}


def test_install_for_another_selection_is_redone(tmp_path):
    payload = support.payload_dir()
    first = install(tmp_path / "shim", payload, python="3.7")
    again = install(tmp_path / "shim", payload, python="3.7")
    assert again["reused"] and again["stamp"] == first["stamp"]
    other = install(tmp_path / "shim", payload, python="3.8")
    assert not other["reused"] and other["stamp"] != first["stamp"]
    assert {path.name for path in (tmp_path / "shim" / contract.SITE_SUBDIR).iterdir()} == {"manifest.json", "py3.8"}


def test_cli_install_python_flag(tmp_path, capsys):
    payload = str(support.payload_dir())
    assert main(["install", str(tmp_path / "a"), "--payload", payload, "--python", "3.7"]) == 0
    assert "vendored py3.7: wandb 0.18.7" in capsys.readouterr().out
    assert main(["install", str(tmp_path / "b"), "--payload", payload, "--python", "3.6"]) == 0
    assert "vendored nothing for Python 3.6" in capsys.readouterr().out
    assert main(["install", str(tmp_path / "c"), "--payload", payload, "--python", "three"]) == 1
    assert "--python must be a CPython minor" in capsys.readouterr().err
