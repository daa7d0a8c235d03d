"""`import_wandb()` in real interpreters: the vendored wandb for the running minor (and a real offline
run with it), the image's own wandb when it has one, and clean failures that leave sys.path as found."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.shim import support
from tests.support.venvs import ensure_venv
from webhook.shim import contract

PROBE = """
import json, os, sys
lib = sys.argv[1]
sys.path.append(lib)
path_before = list(sys.path)
from wandb_kfp_shim.wandb_import import import_wandb
wandb = import_wandb()
report = {
    "version": getattr(wandb, "__version__", None),
    "file": getattr(wandb, "__file__", None),
    "added_to_path": [entry for entry in sys.path if entry not in path_before],
    "wandb_modules": sorted(name for name in sys.modules if name == "wandb" or name.startswith("wandb.")),
    "other_new_modules_from_site": sorted(
        name for name, module in sys.modules.items()
        if (getattr(module, "__file__", None) or "").startswith(os.path.dirname(lib) + "/site/")),
    "site_dirs_loaded": sorted({
        (getattr(module, "__file__", None) or "").split("/site/", 1)[1].split("/")[0]
        for module in list(sys.modules.values())
        if (getattr(module, "__file__", None) or "").startswith(os.path.dirname(lib) + "/site/")}),
    "protobuf": getattr(sys.modules.get("google.protobuf"), "__version__", None),
    "distutils_left": sorted(name for name in sys.modules if name.split(".")[0] == "distutils"),
}
if wandb is not None and os.environ.get("RUN_OFFLINE"):
    run = wandb.init(mode="offline", dir=os.environ["RUN_OFFLINE"], project="site-test", config={"a": 1})
    run.log({"x": 2.5})
    run.finish()
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> Path:
    return support.install_shim(tmp_path_factory.mktemp("pod") / "wandb-shim", with_payload=True)


def probe(python, shim: Path, extra_env=None) -> tuple[dict, str]:
    env = support.shim_env(shim, extra_env, debug=False)
    env.pop("PYTHONPATH")  # import_wandb is called by the active shim; start-up decisions are tested elsewhere
    done = support.run_python(python, ["-c", PROBE, str(shim / contract.LIB_SUBDIR)], env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def bare_python(minor: str) -> Path:
    """A venv without wandb: stands for an ordinary component image."""
    try:
        return ensure_venv("s1-image", minor, [])
    except LookupError as missing:
        pytest.skip(str(missing))


@pytest.mark.parametrize("minor", ["3.9", "3.10", "3.12"])
def test_vendored_wandb_for_this_minor_imports_and_records(minor, shim, tmp_path):
    manifest = json.loads((shim / contract.SITE_SUBDIR / "manifest.json").read_text())
    report, stderr = probe(bare_python(minor), shim, {"RUN_OFFLINE": str(tmp_path)})
    vendored = str(shim / contract.SITE_SUBDIR / f"py{minor}")
    assert report["version"] == manifest["minors"][minor]["wandb"]
    assert report["file"] == f"{vendored}/wandb/__init__.py"
    assert report["added_to_path"] == [vendored]
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0, stderr
    assert support.shim_lines(stderr) == []


def test_image_own_wandb_wins(shim):
    try:
        python = ensure_venv("s1-own-wandb", "3.10", ["wandb==0.26.1"])
    except LookupError as missing:
        pytest.skip(str(missing))
    report, stderr = probe(python, shim)
    assert report["version"] == "0.26.1"  # the vendored one for 3.10 is 0.31.0
    assert "/site-packages/wandb/" in report["file"]
    assert report["added_to_path"] == []
    assert support.shim_lines(stderr) == []


#: What import_wandb leaves behind when it gives up: no wandb, no path entry, no module from the site.
NOTHING_LOADED = {
    "version": None,
    "file": None,
    "added_to_path": [],
    "wandb_modules": [],
    "other_new_modules_from_site": [],
    "site_dirs_loaded": [],
    "protobuf": None,
    "distutils_left": [],
}


def test_no_vendored_wandb_for_this_minor(tmp_path):
    shim = support.install_shim(tmp_path / "shim", with_payload=False)
    report, stderr = probe(bare_python("3.11"), shim)
    assert report == NOTHING_LOADED
    assert support.shim_lines(stderr) == [
        "wandb-kfp-shim: no wandb in this image and none vendored for Python 3.11; W&B tracking is off"
    ]


def test_broken_vendored_wandb_is_undone(tmp_path):
    """A vendored wandb that fails half-way leaves no path entry and none of its modules behind."""
    shim = support.install_shim(tmp_path / "shim", with_payload=False)
    site = shim / contract.SITE_SUBDIR / "py3.11"
    (site / "wandb").mkdir(parents=True)
    (site / "wandb_helper_dep.py").write_text("VALUE = 1\n")
    (site / "wandb" / "__init__.py").write_text("import wandb_helper_dep\nfrom . import missing_part\n")
    report, stderr = probe(bare_python("3.11"), shim)
    assert report == NOTHING_LOADED
    assert support.shim_lines(stderr) == [
        "wandb-kfp-shim: the vendored wandb for Python 3.11 failed to import (builtins.ImportError); "
        "W&B tracking is off"
    ]


def test_glibc_older_than_the_wheels_need(tmp_path):
    shim = support.install_shim(tmp_path / "shim", with_payload=False)
    (shim / contract.SITE_SUBDIR / "py3.11" / "wandb").mkdir(parents=True)
    (shim / contract.SITE_SUBDIR / "manifest.json").write_text(json.dumps({"glibc_min": "99.0"}))
    report, stderr = probe(bare_python("3.11"), shim)
    assert report["version"] is None and report["added_to_path"] == []
    lines = support.shim_lines(stderr)
    assert len(lines) == 1 and lines[0].startswith("wandb-kfp-shim: the vendored wandb needs glibc >= 99.0")


def kfp20_image() -> Path:
    """Python 3.10 with kfp 2.0.1 and its protobuf 3.20.3 (installed, not imported by the probe), no wandb."""
    try:
        return ensure_venv("s2-kfp20", "3.10", ["kfp==2.0.1"])
    except LookupError as missing:
        pytest.skip(str(missing))


def test_image_protobuf_older_than_the_vendored_wandb_accepts_goes_straight_to_compat(shim, tmp_path):
    """protobuf 3.20.3 on the image's path (found without importing it): the vendored 0.31.0 (protobuf >= 5)
    is never tried, the compat wandb 0.18.7 records, with the image's protobuf."""
    report, stderr = probe(kfp20_image(), shim, {"RUN_OFFLINE": str(tmp_path)})
    compat = str(shim / contract.SITE_SUBDIR / "py3.10-compat")
    assert report["version"] == "0.18.7"
    assert report["file"] == f"{compat}/wandb/__init__.py"
    assert report["added_to_path"] == [compat]
    assert report["site_dirs_loaded"] == ["py3.10-compat"]  # nothing of the 0.31.0 site was imported
    assert report["protobuf"] == "3.20.3"  # the image's: the compat site has none
    assert len(list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))) == 1, stderr
    assert support.shim_lines(stderr) == []


def test_vendored_wandb_failing_for_another_reason_falls_back_to_compat(tmp_path):
    """No manifest to judge protobuf by, and a vendored wandb that fails: undone, then the compat one."""
    shim = support.install_shim(tmp_path / "shim", with_payload=False)
    site = shim / contract.SITE_SUBDIR
    (site / "py3.10" / "wandb").mkdir(parents=True)
    (site / "py3.10" / "wandb_helper_dep.py").write_text("VALUE = 1\n")
    (site / "py3.10" / "wandb" / "__init__.py").write_text("import wandb_helper_dep\nfrom . import missing_part\n")
    # a linked copy (new directories, shared files): the cached payload itself must get no __pycache__
    shutil.copytree(
        support.payload_dir() / contract.SITE_SUBDIR / "py3.10-compat", site / "py3.10-compat", copy_function=os.link
    )
    report, stderr = probe(kfp20_image(), shim)
    assert report["version"] == "0.18.7"
    assert report["added_to_path"] == [str(site / "py3.10-compat")]
    assert report["site_dirs_loaded"] == ["py3.10-compat"]  # the failed attempt's modules are gone
    assert support.shim_lines(stderr) == []


def test_debug_says_which_wandb_and_why(shim):
    report, stderr = probe(kfp20_image(), shim, {"WANDB_KFP_SHIM_DEBUG": "1"})
    assert report["version"] == "0.18.7"
    assert support.shim_lines(stderr) == [
        "wandb-kfp-shim: the image's protobuf 3.20.3 is older than the vendored wandb for Python 3.10 accepts",
        "wandb-kfp-shim: recording with the compat wandb 0.18.7 for Python 3.10",
    ]


def test_both_vendored_and_compat_failing_leave_nothing_and_say_once(tmp_path):
    """A failing vendored wandb, then a compat one that cannot import either (no protobuf in this image):
    one line naming the first failure, and neither attempt leaves a path entry or a module behind."""
    shim = support.install_shim(tmp_path / "shim", with_payload=False)
    site = shim / contract.SITE_SUBDIR
    (site / "py3.10" / "wandb").mkdir(parents=True)
    (site / "py3.10" / "wandb" / "__init__.py").write_text("from . import missing_part\n")
    shutil.copytree(
        support.payload_dir() / contract.SITE_SUBDIR / "py3.10-compat", site / "py3.10-compat", copy_function=os.link
    )
    report, stderr = probe(bare_python("3.10"), shim)
    assert report == NOTHING_LOADED
    assert support.shim_lines(stderr) == [
        "wandb-kfp-shim: the vendored wandb for Python 3.10 failed to import (builtins.ImportError); "
        "W&B tracking is off"
    ]


def test_a_wandb_run_directory_on_the_path_is_not_the_images_wandb(shim, tmp_path):
    """A KFP v1 program runs from /tmp, so /tmp is sys.path[0]: a `wandb/` run directory there (wandb's own
    default) is a namespace package, not wandb; the vendored wandb is used."""
    workdir = tmp_path / "cwd"
    (workdir / "wandb" / "offline-run-x").mkdir(parents=True)
    env = support.shim_env(shim, {"PYTHONPATH": str(workdir)}, debug=False)
    done = support.run_python(bare_python("3.10"), ["-c", PROBE, str(shim / contract.LIB_SUBDIR)], env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["file"] == str(shim / contract.SITE_SUBDIR / "py3.10" / "wandb" / "__init__.py")
    assert support.shim_lines(done.stderr) == []


@pytest.mark.parametrize("minor", ["3.11", "3.12", "3.13"])
def test_compat_wandb_records_next_to_protobuf4_on_newer_pythons(minor, shim, tmp_path):
    """The compat wandb 0.18.7 on every minor that has one, next to an image's protobuf 4 (a real offline run)."""
    try:
        python = ensure_venv("s1-protobuf4", minor, ["protobuf==4.25.5"])
    except LookupError as missing:
        pytest.skip(str(missing))
    report, stderr = probe(python, shim, {"RUN_OFFLINE": str(tmp_path)})
    assert report["version"] == "0.18.7"
    assert report["site_dirs_loaded"] == [f"py{minor}-compat"]
    assert report["protobuf"] == "4.25.5"
    if minor != "3.11":  # 3.12+: setuptools' distutils was lent for wandb's import only
        assert report["distutils_left"] == []
    assert len(list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))) == 1, stderr
    assert support.shim_lines(stderr) == []
