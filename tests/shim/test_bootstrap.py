"""The bootstrap's activation decision under every CPython 3.7-3.13 here, on real commands and real pods
(3.7 is supported since wandb 0.18.7 is vendored for it; 2.7 and 3.6 get one line).

Each case starts a real interpreter with the installed bootstrap first on PYTHONPATH and
WANDB_KFP_SHIM_DEBUG=1, which makes the bootstrap print its decision; inactive cases must also leave
stdout and the exit code exactly as without the shim.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from tests.fixtures import pods
from tests.shim import support
from tests.support.venvs import ensure_venv
from webhook.shim import contract

BOOTSTRAP_SOURCE = Path(contract.__file__).parent / contract.BOOTSTRAP_SUBDIR / "sitecustomize.py"
ALL_MINORS = ["3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
PYTHONS = support.pythons(ALL_MINORS)
SUPPORTED = list(PYTHONS)
ACTIVE_V1 = "wandb-kfp-shim: active v1: KFP v1 program "
ACTIVE_V2 = "wandb-kfp-shim: active v2: python -m "


def python_for(minor: str) -> Path:
    if minor not in PYTHONS:
        pytest.skip(f"CPython {minor} is not installed here")
    return PYTHONS[minor]


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> Path:
    return support.install_shim(tmp_path_factory.mktemp("pod") / "wandb-shim", with_payload=False)


@pytest.fixture()
def base_env(shim, tmp_path) -> dict:
    """The pod env: bootstrap on PYTHONPATH, offline wandb into tmp (in case recording starts)."""
    return support.shim_env(shim, {contract.WANDB_MODE: "offline", contract.WANDB_DIR: str(tmp_path)})


def plain_env() -> dict:
    return {
        key: value
        for key, value in support.shim_env(Path("/nonexistent")).items()
        if key not in ("PYTHONPATH", "WANDB_KFP_SHIM_DEBUG")
    }


def test_bootstrap_names_match_the_contract():
    """The bootstrap finds the package by path before it can import the contract: the names must agree."""
    assigned = {}
    for node in ast.parse(BOOTSTRAP_SOURCE.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Constant, ast.Tuple)):
            assigned[node.targets[0].id] = ast.literal_eval(node.value)
    assert assigned["_LIB_SUBDIR"] == contract.LIB_SUBDIR
    assert assigned["_PACKAGE"] == contract.SHIM_PACKAGE_NAME
    assert assigned["_V2_MODULES"] == contract.V2_EXECUTOR_MAIN_MODULES
    assert assigned["_V1_MARKERS"] == tuple(marker.encode() for marker in contract.V1_PROGRAM_MARKERS)


@pytest.mark.parametrize("minor", ["2.7", "3.6", *ALL_MINORS])
def test_bootstrap_parses_under_old_pythons(minor):
    """An old image must get at most one line from us, never a SyntaxError traceback."""
    python = support.find_python(minor)
    if python is None:
        pytest.skip(f"CPython {minor} is not installed here")
    check = "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')"
    done = support.run_python(python, ["-c", check, str(BOOTSTRAP_SOURCE)], plain_env())
    assert done.returncode == 0, done.stderr


INACTIVE_CASES = {
    "python -c": (["-c", "print('ok')"], "python -c"),
    "python -m pip": (["-m", "pip", "--version"], "python -m pip"),
    "python -W -X -m json.tool": (["-W", "ignore", "-X", "utf8", "-m", "json.tool", "{data}"], "python -m json.tool"),
    "py_compile": (["-m", "py_compile", "{script}"], "python -m py_compile"),
    "compileall": (["-m", "compileall", "-q", "{scripts}"], "python -m compileall"),
    "plain script": (["-u", "{script}", "x"], "script {script}"),
    "stdin": (["-"], "python stdin"),
}


@pytest.mark.parametrize("case", sorted(INACTIVE_CASES))
@pytest.mark.parametrize("minor", ALL_MINORS)
def test_inactive_for_everything_but_a_component(minor, case, base_env, tmp_path):
    python = python_for(minor)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    script = scripts / "hello.py"
    script.write_text("import sys\nprint('hello', sys.argv[1:])\n")
    data = tmp_path / "data.json"
    data.write_text('{"a": 1}')
    words, reason = INACTIVE_CASES[case]
    fill = {"script": str(script), "scripts": str(scripts), "data": str(data)}
    args = [word.format(**fill) for word in words]
    with_shim = support.run_python(python, args, base_env, cwd=tmp_path)
    without = support.run_python(python, args, plain_env(), cwd=tmp_path)
    assert support.shim_lines(with_shim.stderr) == ["wandb-kfp-shim: inactive: " + reason.format(**fill)]
    assert (with_shim.returncode, with_shim.stdout) == (without.returncode, without.stdout)
    assert with_shim.returncode == 0, with_shim.stderr


@pytest.mark.parametrize("minor", ALL_MINORS)
def test_inactive_for_pip_script_and_venv(minor, base_env, tmp_path):
    """The pip console script, `python -m venv` and the new venv's python all stay untouched."""
    python = python_for(minor)
    pip_script = python.parent / f"pip{minor}"
    done = support.run_python(pip_script, ["--version"], base_env) if pip_script.exists() else None
    if done is not None:
        assert done.returncode == 0, done.stderr
        assert support.shim_lines(done.stderr) == [f"wandb-kfp-shim: inactive: script {pip_script}"]
    venv = tmp_path / "venv"
    made = support.run_python(python, ["-m", "venv", "--without-pip", str(venv)], base_env)
    assert made.returncode == 0, made.stderr
    assert support.shim_lines(made.stderr) == ["wandb-kfp-shim: inactive: python -m venv"]
    inner = support.run_python(venv / "bin" / "python", ["-c", "import sys; print(sys.prefix)"], base_env)
    assert inner.stdout.strip() == str(venv)
    assert support.shim_lines(inner.stderr) == ["wandb-kfp-shim: inactive: python -c"]


V2_SHAPES = {
    "-m kfp.dsl.executor_main": ["-m", "kfp.dsl.executor_main", "--executor_input", "{}"],
    "-um kfp.components.executor_main": ["-um", "kfp.components.executor_main"],
    "-W x -mkfp.dsl.executor_main": ["-W", "ignore", "-mkfp.dsl.executor_main"],
    "-X utf8 -u -m kfp.dsl.executor_main": ["-X", "utf8", "-u", "-m", "kfp.dsl.executor_main"],
}


@pytest.mark.parametrize("shape", sorted(V2_SHAPES))
@pytest.mark.parametrize("minor", ALL_MINORS)
def test_v2_executor_command_shapes_are_detected(minor, shape, base_env):
    """No kfp in these interpreters: the decision is made, then Python reports the missing module."""
    python = python_for(minor)
    done = support.run_python(python, V2_SHAPES[shape], base_env)
    module = next(
        word.replace("-m", "", 1) if word.startswith("-mk") else word
        for word in V2_SHAPES[shape]
        if "executor_main" in word
    )
    lines = support.shim_lines(done.stderr)
    assert lines[0] == ACTIVE_V2 + module
    assert "No module named" in done.stderr


def image_python(minor: str) -> Path:
    """A cached venv standing in for the component image: pod commands may pip-install into it."""
    python_for(minor)
    return ensure_venv("s1-image", minor, [])


def run_v1_pod(pod_name, python, env, tmp_path, program_edit=None):
    """Run a compiled KFP v1 pod's main command (sh -ec ... python3 -u prog) with python3 = python."""
    argv = pods.main_command(pods.load_pod(pod_name))
    outputs = tmp_path / "outputs"
    argv = [word.replace("/tmp/outputs/", f"{outputs}/") for word in argv]
    if program_edit is not None:
        argv[3] = program_edit(argv[3])
    bindir = support.python3_path_dir(python, tmp_path / "bin")
    done = support.run_python(argv[0], argv[1:], support.with_path_first(env, bindir), cwd=tmp_path)
    return done, outputs


@pytest.mark.parametrize("minor", ALL_MINORS)
@pytest.mark.parametrize("pod_name", ["v1-add", "v1-greet"])
def test_kfp_v1_pod_program_is_detected_and_output_unchanged(minor, pod_name, base_env, tmp_path):
    python = image_python(minor)
    done, outputs = run_v1_pod(pod_name, python, base_env, tmp_path)
    assert done.returncode == 0, done.stderr
    for name, output in pods.index_entry(pod_name)["output_files"].items():
        written = outputs / Path(output["path"]).relative_to("/tmp/outputs")
        assert written.read_text() == output["content"], name
    lines = support.shim_lines(done.stderr)
    if "python3 -m pip install" in pods.main_command(pods.load_pod(pod_name))[2]:
        assert lines.pop(0) == "wandb-kfp-shim: inactive: python -m pip"  # packages_to_install step
    assert lines[0].startswith(ACTIVE_V1), done.stderr


@pytest.mark.parametrize("minor", SUPPORTED)
def test_shim_off_switch(minor, base_env, tmp_path):
    python = image_python(minor)
    env = dict(base_env, **{contract.SHIM_SWITCH: "off"})
    done, outputs = run_v1_pod("v1-add", python, env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (outputs / "Output" / "data").read_text() == "3.75"
    lines = support.shim_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"wandb-kfp-shim: inactive: {contract.SHIM_SWITCH}=off")


@pytest.mark.parametrize("minor", SUPPORTED)
def test_child_of_active_component_stays_inactive(minor, base_env, tmp_path):
    """The component's function starts a Python child that looks like a v2 executor: it must not activate."""
    python = image_python(minor)
    child_log = tmp_path / "child.stderr"

    def spawn_child(program: str) -> str:
        body = (
            "    import subprocess, sys\n"
            f"    with open({str(child_log)!r}, 'w') as log:\n"
            "        subprocess.call([sys.executable, '-m', 'kfp.dsl.executor_main'], stderr=log)\n"
        )
        return program.replace("def add(a, b):\n", "def add(a, b):\n" + body, 1)

    done, outputs = run_v1_pod("v1-add", python, base_env, tmp_path, program_edit=spawn_child)
    assert done.returncode == 0, done.stderr
    assert (outputs / "Output" / "data").read_text() == "3.75"
    assert support.shim_lines(done.stderr)[0].startswith(ACTIVE_V1)
    child_lines = support.shim_lines(child_log.read_text())
    assert len(child_lines) == 1
    assert child_lines[0].startswith("wandb-kfp-shim: inactive: child of active component process ")


@pytest.mark.parametrize("minor", ["2.7", "3.6"])
def test_older_pythons_print_one_line_and_run_unchanged(minor, base_env, tmp_path):
    python = support.find_python(minor)
    if python is None:
        pytest.skip(f"CPython {minor} is not installed here")
    program = tmp_path / "prog"
    program.write_text(
        "import argparse\n_parser = argparse.ArgumentParser()\n_parser.add_argument('--a')\n"
        "_parsed_args = vars(_parser.parse_args())\n"
        "def f(a):\n    return a\n_outputs = f(**_parsed_args)\nprint(_outputs)\n"
    )
    done = support.run_python(python, ["-u", str(program), "--a", "7"], base_env)
    assert (done.returncode, done.stdout) == (0, "7\n")
    assert support.shim_lines(done.stderr) == [
        f"wandb-kfp-shim: Python {minor} is not supported (needs 3.7-3.13); W&B tracking is off for this component"
    ]
    assert "Traceback" not in done.stderr


def test_v2_pod_pip_step_inactive_executor_active(base_env, tmp_path):
    """The real KFP v2 pod command: the pip step stays inactive, the executor process activates."""
    try:
        python = ensure_venv("kfp2", "3.11", ["kfp==2.17.3"])
    except LookupError as missing:
        pytest.skip(str(missing))
    outputs = tmp_path / "kfp_outputs"
    component = [
        word.replace("/tmp/kfp_outputs/", f"{outputs}/").replace("/tmp/kfp/outputs/", f"{outputs}/")
        for word in pods.resolved_component_command(pods.load_pod("v2-add"))
    ]
    bindir = support.python3_path_dir(python, tmp_path / "bin")
    (bindir / "pip").symlink_to(Path(python).parent / "pip")
    env = support.with_path_first(base_env, bindir)
    done = support.run_python(component[0], component[1:], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = support.shim_lines(done.stderr)
    assert lines[0] == "wandb-kfp-shim: inactive: python -m pip"
    assert lines[1] == ACTIVE_V2 + "kfp.dsl.executor_main"
    assert json.loads((outputs / "output_metadata.json").read_text())["parameterValues"] == {"Output": 3.75}


IMPORT_EVERY_MODULE = """
import importlib, pkgutil, sys
sys.path.append(sys.argv[1])
import wandb_kfp_shim
names = sorted(info.name for info in pkgutil.iter_modules(wandb_kfp_shim.__path__))
for name in names:
    importlib.import_module("wandb_kfp_shim." + name)
print(" ".join(names))
"""


@pytest.mark.parametrize("minor", ALL_MINORS)
def test_every_shim_module_imports_under_each_supported_python(minor, shim):
    """Everything copied into pods is stdlib-only at import time and runs on 3.7 (no newer syntax/APIs)."""
    python = python_for(minor)
    done = support.run_python(python, ["-c", IMPORT_EVERY_MODULE, str(shim / contract.LIB_SUBDIR)], plain_env())
    assert done.returncode == 0, done.stderr
    names = done.stdout.split()
    runtime = {"activate", "contract", "kfp_v1", "kfp_v2", "recorder", "runextras", "wandb_import", "messages"}
    assert runtime <= set(names)
    assert not {"install", "payload"} & set(names)
