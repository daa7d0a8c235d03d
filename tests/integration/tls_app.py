"""A tiny WSGI app for the serving tests: says which worker and which client port served a request."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """/healthz answers ok; anything else answers the worker pid and the client's source port,
    which is how tests see keep-alive reuse and which worker handled a connection."""
    if environ.get("PATH_INFO") == "/healthz":
        body = b"ok"
        content_type = "text/plain"
    else:
        request_body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        body = json.dumps(
            {
                "pid": os.getpid(),
                "remote_port": int(environ.get("REMOTE_PORT") or 0),
                "path": environ.get("PATH_INFO"),
                "received_bytes": len(request_body),
            }
        ).encode()
        content_type = "application/json"
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def create_app() -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """Factory form, to prove serve() calls zero-argument factories in each worker."""
    return app
