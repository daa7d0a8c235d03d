"""Log lines are one JSON object each: a value a client sent can neither forge a line nor blow one up."""

from __future__ import annotations

import io
import json
import logging

from webhook import logs


def emit(*args, **kwargs):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("test.logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.error(*args, **kwargs)
    return stream.getvalue()


def test_one_json_object_per_line_with_extra_fields():
    line = emit("internal error, pod admitted unchanged", extra={"uid": "abc", "error": "KeyError"})
    assert line.count("\n") == 1
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "test.logs"
    assert entry["message"] == "internal error, pod admitted unchanged"
    assert (entry["uid"], entry["error"]) == ("abc", "KeyError")
    assert entry["time"].endswith("Z")


def test_a_newline_in_a_request_field_stays_inside_its_string():
    line = emit("injected", extra={"uid": 'u1\n{"level": "ERROR", "message": "forged"}'})
    assert line.count("\n") == 1
    assert json.loads(line)["uid"].startswith("u1\n")


def test_a_huge_field_is_cut():
    line = emit("injected", extra={"uid": "x" * 100_000})
    assert len(line) < 2_000
    assert json.loads(line)["uid"].endswith("...")


def test_exceptions_keep_their_type_and_stack_not_their_message():
    secret = "-".join(["the", "secret", "value"])  # built at run time: the stack quotes source lines only
    try:
        raise ValueError(secret)
    except ValueError:
        line = emit("failed", exc_info=True)
    entry = json.loads(line)
    assert entry["exception"] == "ValueError" and "test_logs.py" in entry["stack"]
    assert secret not in line
