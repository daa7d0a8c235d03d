"""KFP v1 pipelines the node tier runs, compiled by the real kfp 1.8.22: `python kfp_v1.py OUT_DIR`.

Runs only inside the cached kfp==1.8.22 venv (tests.node.kfp starts it), never in the project venv; it
writes one Argo Workflow YAML per pipeline, exactly as the SDK's compiler emits it. Component bodies are
stdlib-only, deterministic and valid on Python 3.7+. Each component names the `python:3.X` image it runs
on: the node tier tags its component image of that CPython minor as `docker.io/library/python:3.X`, so
the compiled Workflows run unchanged and the webhook narrows the shim copy to that minor.
"""

import os
import sys
from typing import NamedTuple

from kfp import compiler, dsl
from kfp.components import InputPath, OutputPath, create_component_from_func


def make_lines(rows: int, text_path: OutputPath(str)) -> NamedTuple("Outputs", [("lines", int), ("first", str)]):
    """Write `rows` numbered lines; return how many there are and the first one (a NamedTuple)."""
    from collections import namedtuple

    lines = ["line " + str(row) for row in range(rows)]
    with open(text_path, "w") as text_file:
        text_file.write("\n".join(lines) + "\n")
    return namedtuple("Outputs", ["lines", "first"])(len(lines), lines[0])


def count_words(text_path: InputPath(str), summary_path: OutputPath(str), prefix: str) -> int:
    """Count the words of the input file; write a one-line summary file (InputPath and OutputPath)."""
    with open(text_path) as text_file:
        words = len(text_file.read().split())
    with open(summary_path, "w") as summary_file:
        summary_file.write(prefix + ": " + str(words) + " words")
    return words


def scale(value: int, factor: float) -> float:
    """Scalars in, a scalar out."""
    return value * factor


def check_limit(value: int, limit: int) -> int:
    """Fails (ValueError, exit code 1) when the value is above the limit."""
    if value > limit:
        raise ValueError("value " + str(value) + " is above the limit " + str(limit))
    return value


make_lines_op = create_component_from_func(make_lines, base_image="python:3.7")
count_words_op = create_component_from_func(count_words, base_image="python:3.11")
scale_op = create_component_from_func(scale, base_image="python:3.13")
check_limit_op = create_component_from_func(check_limit, base_image="python:3.11")


@dsl.pipeline(name="node-v1-journey", description="NamedTuple, files between steps, scalars; three Python minors.")
def journey(rows: int = 4, prefix: str = "counted", factor: float = 1.5):
    made = make_lines_op(rows)
    counted = count_words_op(made.outputs["text"], prefix)
    scale_op(counted.outputs["Output"], factor)


@dsl.pipeline(name="node-v1-failing", description="A step that raises; the step after it never runs.")
def failing(value: int = 7, limit: int = 5):
    checked = check_limit_op(value, limit)
    scale_op(checked.output, 2.0)


@dsl.pipeline(name="node-v1-add", description="One scalar step: the smallest KFP v1 component pod.")
def one_step(value: int = 2, factor: float = 3.0):
    scale_op(value, factor)


PIPELINES = {"node-v1-journey": journey, "node-v1-failing": failing, "node-v1-add": one_step}


def main():
    out_dir = sys.argv[1]
    for name, pipeline in sorted(PIPELINES.items()):
        compiler.Compiler().compile(pipeline, os.path.join(out_dir, name + ".yaml"))


if __name__ == "__main__":
    main()
