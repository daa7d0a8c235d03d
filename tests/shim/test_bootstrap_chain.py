"""The image's own sitecustomize still runs, exactly once, with the bootstrap in front of it.

Images (Debian's python, conda, corporate base images) ship a sitecustomize; the bootstrap shadows it by
being first on PYTHONPATH, so it must import the image's one itself and leave the process as the image
expects it: same side effects, same sys.path additions, same error message when it fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.shim import support

MINORS = [minor for minor in ("3.8", "3.10", "3.13") if minor in support.pythons([minor])]

IMAGE_SITECUSTOMIZE = """\
import sys
sys.stderr.write("image sitecustomize ran\\n")
sys.path.append("/image-added-path")
IMAGE_MARK = "image"
"""

PROBE = "import sitecustomize, sys; print(getattr(sitecustomize, 'IMAGE_MARK', None)); print(sys.path)"


@pytest.fixture(scope="module")
def shims(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("chain")
    return (support.install_shim(root / "a", with_payload=False), support.install_shim(root / "b", with_payload=False))


def image_dir(tmp_path: Path, source: str) -> Path:
    directory = tmp_path / "image-site"
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(source)
    return directory


def env_with(pythonpath: list[Path], shim: Path) -> dict:
    env = support.shim_env(shim)
    env["PYTHONPATH"] = ":".join(str(entry) for entry in pythonpath)
    return env


@pytest.mark.parametrize("minor", MINORS)
def test_image_sitecustomize_runs_once_and_keeps_its_effects(minor, shims, tmp_path):
    python = support.find_python(minor)
    image = image_dir(tmp_path, IMAGE_SITECUSTOMIZE)
    bootstrap = support.bootstrap_dir(shims[0])
    with_shim = support.run_python(python, ["-c", PROBE], env_with([bootstrap, image], shims[0]))
    without = support.run_python(python, ["-c", PROBE], env_with([image], shims[0]))
    assert with_shim.returncode == 0, with_shim.stderr
    assert with_shim.stderr.count("image sitecustomize ran") == 1
    mark, path = with_shim.stdout.splitlines()
    assert mark == "image"  # `import sitecustomize` gives the image's module, as without the shim
    expected_path = ast.literal_eval(without.stdout.splitlines()[1])
    expected_path.insert(expected_path.index(str(image)), str(bootstrap))
    assert ast.literal_eval(path) == expected_path
    assert support.shim_lines(with_shim.stderr) == ["wandb-kfp-shim: inactive: python -c"]


@pytest.mark.parametrize("minor", MINORS)
def test_two_bootstrap_copies_on_the_path_chain_without_recursion(minor, shims, tmp_path):
    """Double injection (or a copy baked into the image) must neither loop nor decide twice."""
    python = support.find_python(minor)
    image = image_dir(tmp_path, IMAGE_SITECUSTOMIZE)
    pythonpath = [support.bootstrap_dir(shims[0]), support.bootstrap_dir(shims[1]), image]
    done = support.run_python(python, ["-c", PROBE], env_with(pythonpath, shims[0]))
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("image sitecustomize ran") == 1
    assert done.stdout.splitlines()[0] == "image"
    assert support.shim_lines(done.stderr) == ["wandb-kfp-shim: inactive: python -c"]


@pytest.mark.parametrize("minor", MINORS)
def test_failing_image_sitecustomize_reports_as_python_does(minor, shims, tmp_path):
    python = support.find_python(minor)
    image = image_dir(tmp_path, "raise RuntimeError('image setup failed')\n")
    bootstrap = support.bootstrap_dir(shims[0])
    with_shim = support.run_python(python, ["-c", "print('ran')"], env_with([bootstrap, image], shims[0]))
    without = support.run_python(python, ["-c", "print('ran')"], env_with([image], shims[0]))
    assert (with_shim.returncode, with_shim.stdout) == (without.returncode, without.stdout) == (0, "ran\n")
    foreign = [line for line in with_shim.stderr.splitlines() if not line.startswith("wandb-kfp-shim:")]
    assert foreign == without.stderr.splitlines()
    assert "RuntimeError: image setup failed" in without.stderr


@pytest.mark.parametrize("minor", MINORS)
def test_no_image_sitecustomize_leaves_ours_in_place(minor, shims):
    python = support.find_python(minor)
    probe = "import sitecustomize; print(sitecustomize.__file__)"
    done = support.run_python(python, ["-c", probe], support.shim_env(shims[0]))
    assert done.stdout.strip() == str(support.bootstrap_dir(shims[0]) / "sitecustomize.py")
