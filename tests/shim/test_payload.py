"""The vendored-wandb payload: real wheels per CPython minor (pip, PyPI), right markers, deduplicated.

The full payload is built once into the test cache (tests.shim.support.payload_dir) and reused.
"""

from __future__ import annotations

import email.parser
import json
import os
import sys
from pathlib import Path

from packaging.specifiers import SpecifierSet

from tests.shim import support
from tests.support.venvs import cache_root
from webhook.shim import contract
from webhook.shim_build import payload
from webhook.shim_build.install import main


def manifest_of(root: Path) -> dict:
    return json.loads((root / contract.SITE_SUBDIR / "manifest.json").read_text())


def wandb_metadata(site: Path):
    info = next(site.glob("wandb-*.dist-info"))
    return email.parser.Parser().parsestr((info / "METADATA").read_text())


def test_payload_has_the_pinned_wandb_for_every_minor():
    root = support.payload_dir()
    manifest = manifest_of(root)
    assert manifest["format"] == payload.PAYLOAD_FORMAT
    assert manifest["platform"] == payload.host_platform()
    assert sorted(manifest["minors"]) == sorted(payload.SUPPORTED_MINORS)
    assert manifest["minors"]["3.7"]["wandb"] == "0.18.7"
    for minor, entry in manifest["minors"].items():
        site = root / contract.SITE_SUBDIR / f"py{minor}"
        metadata = wandb_metadata(site)
        assert f"wandb=={metadata['Version']}" == payload.WANDB_PINS[minor] == f"wandb=={entry['wandb']}"
        assert minor + ".0" in SpecifierSet(metadata["Requires-Python"]), (minor, metadata["Requires-Python"])
        assert (site / "wandb" / "__init__.py").is_file()
        assert os.access(site / "wandb" / "bin" / "wandb-core", os.X_OK)
        assert not (site / "bin").exists()  # console scripts would name the build machine's python
        assert not [name for name in payload.PRUNED_FILES if (site / name).exists()]  # never loaded when logging
        assert not list(site.rglob("__pycache__"))  # pyc files of the build python are useless in pods
        assert entry["files"] > 0 and entry["bytes"] > 0
    assert manifest["glibc_min"] == "2.28"  # wandb's own wheels are manylinux_2_28


def _minor(minor: str) -> tuple[int, ...]:
    return tuple(int(part) for part in minor.split("."))


def test_marker_conditional_dependencies_follow_the_target_minor():
    """pip must have judged markers per minor: wandb 0.24/0.26 need eval-type-backport below 3.10, and
    wandb 0.18.7 (3.7, and the compat sites) needs typing-extensions below 3.12."""
    minors = manifest_of(support.payload_dir())["minors"]
    for minor, entry in minors.items():
        if entry["wandb"] != "0.18.7":
            assert ("eval-type-backport" in entry["distributions"]) == (_minor(minor) < (3, 10)), minor
        compat = entry.get("compat")
        if compat:
            assert ("typing-extensions" in compat["distributions"]) == (_minor(minor) < (3, 12)), minor


def test_python37_site_has_cp37m_extensions():
    """CPython 3.7's ABI tag is cp37m: its compiled dependencies must be the cp37m builds."""
    site = support.payload_dir() / contract.SITE_SUBDIR / "py3.7"
    assert list(site.glob("yaml/_yaml.cpython-37m-*.so"))
    assert manifest_of(support.payload_dir())["minors"]["3.7"]["wandb"] == "0.18.7"


def test_compat_sites_hold_wandb_0_18_7_without_protobuf():
    """Where the pinned wandb refuses protobuf 3.19-4.21, a compat wandb that accepts it, using the image's."""
    root = support.payload_dir()
    minors = manifest_of(root)["minors"]
    for minor, entry in minors.items():
        floor = entry["protobuf_min"]
        refuses_old_protobuf = _minor(floor[0]) > (3, 19, 0) or (_minor(floor[0]) == (3, 19, 0) and not floor[1])
        assert ("compat" in entry) == refuses_old_protobuf == (minor in payload.COMPAT_MINORS), minor
        if "compat" not in entry:
            continue
        compat = entry["compat"]
        site = root / contract.SITE_SUBDIR / f"py{minor}{contract.COMPAT_SITE_SUFFIX}"
        assert f"wandb=={compat['wandb']}" == payload.COMPAT_PIN
        assert compat["protobuf_min"][0] in ("3.15.0", "3.19.0")  # 3.9 / 3.10+ per wandb 0.18.7's markers
        assert "protobuf" not in compat["distributions"]
        assert not (site / "google" / "protobuf").exists()
        assert (site / "wandb" / "__init__.py").is_file()
        # the compat site shares with the primary site (and the other minors) what is identical
        shared = site / "wandb" / "__init__.py"
        assert shared.stat().st_ino == (root / contract.SITE_SUBDIR / "py3.7" / "wandb" / "__init__.py").stat().st_ino


def test_install_sizes_per_minor_count_hardlinks_once():
    root = support.payload_dir()
    for minor, entry in manifest_of(root)["minors"].items():
        sizes = entry["install"]
        assert sizes == payload.install_size(root / contract.SITE_SUBDIR, minor)
        assert 0 < sizes["bytes"] <= entry["bytes"]
        if "compat" in entry:
            assert sizes["bytes"] < sizes["compat_bytes"] < entry["bytes"] + entry["compat"]["bytes"]
        else:
            assert sizes["compat_bytes"] == sizes["bytes"]


def test_identical_files_are_stored_once():
    root = support.payload_dir()
    manifest = manifest_of(root)
    site = root / contract.SITE_SUBDIR
    inodes = {}
    total = 0
    for path in site.rglob("*"):
        if path.is_file() and path.name != "manifest.json":
            info = path.stat()
            inodes[info.st_ino] = info.st_size
            total += info.st_size
    assert total == manifest["bytes_before_dedupe"]
    assert sum(inodes.values()) == manifest["bytes_after_dedupe"] < manifest["bytes_before_dedupe"]
    same = [site / f"py{minor}" / "wandb" / "__init__.py" for minor in ("3.10", "3.11", "3.12", "3.13")]
    assert len({path.stat().st_ino for path in same}) == 1
    print(
        f"payload: {manifest['bytes_before_dedupe']} bytes before dedupe, {manifest['bytes_after_dedupe']} after",
        file=sys.stderr,
    )


def test_dedupe_links_same_content_and_mode_only(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for root in (first, second):
        (root / "pkg").mkdir(parents=True)
        (root / "pkg" / "same.py").write_text("x = 1\n")
        (root / "tool").write_text("#!/bin/sh\n")
    (second / "pkg" / "other.py").write_text("x = 1\n")
    (second / "pkg" / "differs.py").write_text("x = 2\n")
    os.chmod(second / "tool", 0o755)
    totals = payload.dedupe([first, second])
    assert (second / "pkg" / "same.py").stat().st_ino == (first / "pkg" / "same.py").stat().st_ino
    assert (second / "pkg" / "other.py").stat().st_ino == (first / "pkg" / "same.py").stat().st_ino
    assert (second / "tool").stat().st_ino != (first / "tool").stat().st_ino  # modes differ
    assert totals == {"bytes_before_dedupe": 44, "bytes_after_dedupe": 32, "linked_files": 2, "unique_files": 4}


def test_cross_build_without_the_target_python_resolves_the_same_set(monkeypatch):
    """The webhook image has one Python: building for 3.9 from 3.11 must still add 3.9-only deps."""
    native = manifest_of(support.payload_dir())["minors"]["3.9"]
    root = cache_root() / f"payload-cross-{support.payload_key(('3.9',))}"
    if not (root / contract.SITE_SUBDIR / "manifest.json").is_file():
        monkeypatch.setenv("PYENV_ROOT", str(root.parent / "no-pyenv-here"))
        monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin")
        assert payload.find_interpreter("3.9") is None
        assert main(["build-payload", str(root), "--python", "3.9"]) == 0
    cross = manifest_of(root)["minors"]["3.9"]
    assert cross["resolver"] == "cross" and native["resolver"] == "native"
    assert cross["distributions"] == native["distributions"]
