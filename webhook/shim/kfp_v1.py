"""KFP v1 (`create_component_from_func`): record the generated program's call of the component function.

The program KFP 1.8 generates defines the function, parses its arguments with argparse, then runs
`_outputs = <func>(**_parsed_args)` as `__main__`. The shim replaces `ArgumentParser.parse_args` until the
program's own call: from that call's frame it sees the program's globals and swaps the function for a
recording wrapper. Nothing else in the program changes; the output files are still written by it.
"""

import argparse
import functools
import json
import os
import re
import sys

from . import contract, faults, lineage
from .messages import describe, say
from .recorder import call_recorded, start_recorder
from .values import max_upload_bytes

#: The line of the generated program that calls the component function.
CALL_PATTERN = re.compile(contract.V1_CALL_PATTERN, re.MULTILINE)
#: argparse dest of the return-value output files; `type=` of OutputPath arguments.
OUTPUT_PATHS_DEST = "_output_paths"
OUTPUT_PATH_TYPE_NAME = "_make_parent_dirs_and_return_path"
#: Summary key suffix of a single (non-NamedTuple) return value: KFP names that output "Output".
SINGLE_OUTPUT_NAME = "Output"
METRICS_OUTPUT_NAMES = ("mlpipeline-metrics",)


def component_function_name(program_path):
    """The function the generated program calls, or None when this is not a KFP v1 program."""
    try:
        with open(program_path, encoding="utf-8") as handle:
            match = CALL_PATTERN.search(handle.read())
    except (OSError, ValueError):
        return None
    return match.group(1) if match else None


def install(program_path=None):
    """Hook argparse so the program's parse_args call hands the shim the function to wrap."""
    program_path = program_path or (sys.argv[0] if sys.argv else "")
    function_name = component_function_name(program_path)
    if function_name is None:
        return False
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        result = original(self, args, namespace)
        try:
            caller_globals = sys._getframe(1).f_globals
            if caller_globals.get("__name__") == "__main__" and callable(caller_globals.get(function_name)):
                argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
                wrap_component(caller_globals, function_name, self, result)
        except Exception as exc:
            argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
            say("could not hook the KFP v1 component (" + describe(exc) + "); not recording")
        return result

    parse_args.__doc__ = original.__doc__
    argparse.ArgumentParser.parse_args = parse_args  # type: ignore[method-assign]
    return True


def wrap_component(program_globals, function_name, parser, parsed):
    """Replace the component function in the program's globals with a recording wrapper."""
    faults.check("hook")
    func = program_globals[function_name]
    plan = ArgumentPlan(parser, vars(parsed), component_spec())

    @functools.wraps(func)
    def recorded(*args, **kwargs):
        return record_call(func, plan, args, kwargs)

    program_globals[function_name] = recorded


def component_spec():
    """The component spec JSON the webhook passes from the pod annotation; {} when absent or invalid."""
    text = os.environ.get(contract.COMPONENT_SPEC)
    if not text:
        return {}
    try:
        spec = json.loads(text)
    except ValueError:
        return {}
    return spec if isinstance(spec, dict) else {}


def _normalise(name):
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")


def _type_name(spec_type):
    """A component-spec type (`CSV`, `{"GCSPath": ...}`) as a short string, or None."""
    if isinstance(spec_type, str):
        return spec_type
    if isinstance(spec_type, dict) and spec_type:
        return next(iter(spec_type))
    return None


class ArgumentPlan:
    """What each argparse destination of the program is: an input value, an InputPath or an OutputPath."""

    def __init__(self, parser, parsed, spec):
        self.spec = spec
        self.spec_name = spec.get("name")
        inputs = {_normalise(item.get("name")): item for item in spec.get("inputs") or [] if isinstance(item, dict)}
        outputs = {_normalise(item.get("name")): item for item in spec.get("outputs") or [] if isinstance(item, dict)}
        input_paths, return_outputs = _placeholders(spec)
        self.values = {}  # dest -> input name
        self.input_paths = {}  # dest -> (input name, type)
        self.output_paths = {}  # dest -> (output name, type)
        for action in parser._actions:
            dest = action.dest
            if dest in (OUTPUT_PATHS_DEST, "help") or not action.option_strings:
                continue
            option_name = action.option_strings[0].lstrip("-")
            key = _normalise(option_name)
            type_name = getattr(action.type, "__name__", "")
            if key in outputs or type_name == OUTPUT_PATH_TYPE_NAME:
                item = outputs.get(key, {})
                self.output_paths[dest] = (item.get("name", option_name), _type_name(item.get("type")))
            elif key in input_paths or (
                not spec and dest != option_name.replace("-", "_") and re.search(r"_(path|file)$", dest)
            ):
                item = inputs.get(key, {})
                self.input_paths[dest] = (item.get("name", option_name), _type_name(item.get("type")))
            else:
                self.values[dest] = inputs.get(key, {}).get("name", option_name)
        files = parsed.get(OUTPUT_PATHS_DEST) or []
        self.return_names = return_outputs or [os.path.basename(os.path.dirname(path)) for path in files]


def _placeholders(spec):
    """(normalised inputPath names, names of the outputs after `----output-paths`: the return values)."""
    args = ((spec.get("implementation") or {}).get("container") or {}).get("args") or []
    input_paths, return_outputs = set(), []
    after_marker = False
    for arg in _flatten(args):
        if arg == "----output-paths":
            after_marker = True
        elif isinstance(arg, dict) and "inputPath" in arg:
            input_paths.add(_normalise(arg["inputPath"]))
        elif isinstance(arg, dict) and "outputPath" in arg and after_marker:
            return_outputs.append(arg["outputPath"])
    return input_paths, return_outputs


def _flatten(args):
    """Placeholders in order, including those inside `if`/`concat` structures."""
    for arg in args:
        if isinstance(arg, dict) and "if" in arg:
            branches = arg["if"] or {}
            for branch in ("then", "else"):
                yield from _flatten(branches.get(branch) or [])
        elif isinstance(arg, dict) and "concat" in arg:
            yield from _flatten(arg["concat"] or [])
        else:
            yield arg


def record_call(func, plan, args, kwargs):
    """Call the component function inside a W&B run; its result or exception passes through unchanged."""
    recorder = start_recorder(contract.KIND_V1_COMPONENT, func.__name__, {"spec_name": plan.spec_name})
    return call_recorded(
        recorder,
        func,
        args,
        kwargs,
        lambda rec: record_inputs(rec, plan, kwargs),
        lambda rec, result: record_outputs(rec, plan, kwargs, result),
    )


def record_inputs(recorder, plan, kwargs):
    """config = input values by KFP input name; InputPath files used as artifacts (offline: referenced)."""
    config = {}
    for dest, name in plan.values.items():
        if dest in kwargs:
            config[name] = kwargs[dest]
    limit = max_upload_bytes()
    lineage_entries = {}
    for dest, (name, type_name) in plan.input_paths.items():
        path = kwargs.get(dest)
        if not path:
            continue
        reference = {"path": path, "type": type_name}
        if os.path.exists(path):
            reference["bytes"] = _size(path)
        used = False
        try:
            if os.path.exists(path):
                artifact, lineage_entries[name] = lineage.v1_input_artifact(recorder, name, type_name, path, limit)
                used = recorder.use_input_artifact(artifact)
        except Exception as exc:
            say("could not record input artifact " + name + " (" + describe(exc) + ")")
        reference["artifact"] = "used" if used else "referenced"
        config[name] = reference
    recorder.update_config(config)
    lineage.record_input_lineage(recorder, lineage_entries)


def record_outputs(recorder, plan, kwargs, result):
    """summary = return value (`<component>.<output>`); OutputPath files logged as artifacts."""
    component = recorder.component
    summary = {}
    if result is not None:
        names = list(getattr(result, "_fields", None) or plan.return_names)
        if len(names) > 1 and isinstance(result, (tuple, list)) and len(result) == len(names):
            for name, value in zip(names, result):  # noqa: B905  (Python 3.8 has no strict=)
                summary[component + "." + name] = value
        else:
            name = names[0] if len(names) == 1 else SINGLE_OUTPUT_NAME
            summary[component + "." + name] = result
    recorder.update_summary(summary)
    limit = max_upload_bytes()
    for dest, (name, type_name) in plan.output_paths.items():
        path = kwargs.get(dest)
        if not path or not os.path.exists(path):
            continue
        try:
            if _normalise(name) in METRICS_OUTPUT_NAMES:
                recorder.update_summary(_kfp_v1_metrics(path))
            artifact = lineage.v1_output_artifact(recorder, name, type_name, path, limit)
            recorder.log_output_artifact(artifact)
        except Exception as exc:
            say("could not record output artifact " + name + " (" + describe(exc) + ")")


def _kfp_v1_metrics(path):
    """`mlpipeline-metrics` file entries as summary keys (`{"metrics": [{"name", "numberValue"}]}`)."""
    if not os.path.isfile(path) or os.path.getsize(path) > 1024 * 1024:
        return {}
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    metrics = {}
    for item in document.get("metrics") or []:
        if isinstance(item, dict) and "name" in item and isinstance(item.get("numberValue"), (int, float)):
            metrics[str(item["name"])] = item["numberValue"]
    return metrics


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _dirs, files in os.walk(path) for name in files)
