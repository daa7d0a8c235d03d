"""Compile KFP v2 lightweight components with an older real kfp SDK (2.0.1, 2.7.0) and run them as the pod would.

`compiled(venv_python, name)` runs this file as a script inside a venv that holds that kfp, compiles one
of the components below with the SDK's defaults (so the base image is the SDK's default, `python:3.7` for
kfp 2.0-2.7), and returns the executor's image, its command + args (with `{{$}}` unresolved) and the
component spec the launcher carries (`components.comp-<name>` of the IR, JSON), which is what the
executor pod's `--component_spec` holds. `executor_argv` resolves `{{$}}` like the launcher does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Component sources, compiled by the SDK under test (kept Python 3.7-compatible: they run on 3.7).
SOURCES = {
    "add": '''
from kfp import dsl


@dsl.component
def add(a: float, b: float) -> float:
    """Sum of two numbers."""
    return a + b
''',
    "divide": '''
from typing import NamedTuple

from kfp import dsl


@dsl.component
def divide(dividend: int, divisor: int) -> NamedTuple("Outputs", [("quotient", int), ("remainder", int)]):
    """Quotient and remainder."""
    from collections import namedtuple

    return namedtuple("Outputs", ["quotient", "remainder"])(dividend // divisor, dividend % divisor)
''',
}

_SCRIPT = """
import json, os, runpy, sys, tempfile, warnings
import yaml
import kfp
from kfp import compiler
warnings.simplefilter("ignore")
name, source = sys.argv[1], sys.argv[2]
with tempfile.TemporaryDirectory() as work:
    module = os.path.join(work, "component_" + name + ".py")
    with open(module, "w") as handle:
        handle.write(source)
    namespace = runpy.run_path(module)
    path = os.path.join(work, name + ".yaml")
    compiler.Compiler().compile(namespace[name], path)
    with open(path) as handle:
        ir = yaml.safe_load(handle)
container = ir["deploymentSpec"]["executors"]["exec-" + name]["container"]
print(json.dumps({
    "kfp": kfp.__version__,
    "image": container["image"],
    "argv": list(container.get("command") or []) + list(container.get("args") or []),
    "component_spec": ir["components"]["comp-" + name],
}))
"""


@dataclass
class Compiled:
    """One component as an SDK compiled it."""

    name: str
    kfp_version: str
    image: str
    argv: list[str]
    component_spec: dict[str, Any]


def compiled(venv_python: Path, name: str) -> Compiled:
    done = subprocess.run(
        [str(venv_python), "-c", _SCRIPT, name, SOURCES[name]], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"compiling {name} with {venv_python} failed:\n{done.stderr[-3000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return Compiled(name, data["kfp"], data["image"], data["argv"], data["component_spec"])


def executor_input(work: Path, parameters: dict[str, Any], outputs: list[str]) -> dict[str, Any]:
    """The executor input the launcher builds: parameter values, output parameter files, the output file."""
    return {
        "inputs": {"parameterValues": parameters},
        "outputs": {
            "parameters": {output: {"outputFile": str(work / "kfp" / "outputs" / output)} for output in outputs},
            "outputFile": str(work / "kfp_outputs" / "output_metadata.json"),
        },
    }


def executor_argv(component: Compiled, resolved_input: dict[str, Any]) -> list[str]:
    """The component's command + args with `{{$}}` replaced by the executor input, as the launcher does."""
    text = json.dumps(resolved_input)
    return [arg.replace("{{$}}", text) for arg in component.argv]


if __name__ == "__main__":
    print(compiled(Path(sys.argv[1]), sys.argv[2]))
