"""One JSON object per log line, for every process (server master and workers, certificate sync, CLI).

Log collectors parse JSON lines without guessing, and a value a client sent cannot forge a line: every
field is JSON-escaped (a newline in a request uid stays inside its string) and cut to a bounded length.
Callers pass request facts as `extra` fields, never text from the pod (its names, labels, env values).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import Any

#: Longest text kept of any field (a 100 KB uid becomes one short field, not a 100 KB line).
MAX_FIELD_CHARS = 256
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def bounded(value: Any, limit: int = MAX_FIELD_CHARS) -> Any:
    """The value, with text cut to `limit` characters (marked with an ellipsis)."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...extra}`; exceptions by type and stack, never by message."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": bounded(record.getMessage(), 4 * MAX_FIELD_CHARS),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = bounded(value)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            # The stack says where; the exception's message may quote request data, so it is left out.
            entry["stack"] = "".join(traceback.format_tb(record.exc_info[2]))
        return json.dumps(entry, ensure_ascii=True, default=str)


def dict_config(level: str) -> dict[str, Any]:
    """A logging.config.dictConfig for this process (gunicorn's `logconfig_dict` takes it as is)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": {"level": level.upper(), "handlers": [], "propagate": True},
        },
    }


def configure(level: str = "INFO") -> None:
    """JSON lines on stderr for this process, replacing whatever handlers were there."""
    import logging.config

    logging.config.dictConfig(dict_config(level))
    logging.captureWarnings(True)
    sys.stderr.flush()
