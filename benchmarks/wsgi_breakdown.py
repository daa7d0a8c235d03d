"""Where a request's CPU goes above `review()`, without HTTP or TLS: each WSGI app called directly.

    PROMETHEUS_MULTIPROC_DIR=... python -m benchmarks.wsgi_breakdown   # prints one JSON line

Per request of the review mix, median of batches, one thread:
  review        admission.review() alone (parse, decide, patch, response dict)
  flask_quiet   the webhook's Flask app (create_app) with the webhook.access logger at WARNING
  flask         the same app as served: INFO, so one "injected ..." line per injected pod (to /dev/null)
  floor         benchmarks.floor_app:app (drain the body, canned response)
The server sets PROMETHEUS_MULTIPROC_DIR (mmap-backed metrics); so does the caller of this module.
"""

from __future__ import annotations

import io
import json
import logging
import os
import statistics
import sys
import time
from typing import Any

BATCHES = 7
LOOPS = 3  # passes over the mix per batch


def environ_for(body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/mutate",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def call(app: Any, body: bytes) -> None:
    status: list[str] = []
    chunks = app(environ_for(body), lambda s, headers, exc_info=None: status.append(s))
    b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    if not status or not status[0].startswith("200"):
        raise RuntimeError(f"app answered {status}")


def per_request_ms(function: Any, bodies: list[bytes]) -> float:
    for body in bodies:
        function(body)
    batches = []
    for _ in range(BATCHES):
        started = time.perf_counter()
        for _ in range(LOOPS):
            for body in bodies:
                function(body)
        batches.append((time.perf_counter() - started) * 1000 / (LOOPS * len(bodies)))
    return round(statistics.median(batches), 4)


def main() -> None:
    from benchmarks import floor_app
    from benchmarks.reviews import review_mix
    from webhook.admission import review
    from webhook.app import create_app
    from webhook.config import Settings
    from webhook.namespaces import StaticNamespaces

    logging.basicConfig(
        level=logging.INFO, stream=open(os.devnull, "w"), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings, namespaces = Settings(watch_namespaces=False), StaticNamespaces()
    bodies = [item.body for item in review_mix()]
    app = create_app(settings, namespaces)
    access = logging.getLogger("webhook.access")
    result: dict[str, Any] = {}
    result["review"] = per_request_ms(lambda body: review(body, namespaces, settings), bodies)
    access.setLevel(logging.WARNING)
    result["flask_quiet"] = per_request_ms(lambda body: call(app, body), bodies)
    access.setLevel(logging.NOTSET)
    result["flask"] = per_request_ms(lambda body: call(app, body), bodies)
    result["floor"] = per_request_ms(lambda body: call(floor_app.app, body), bodies)
    result["json_loads_body"] = per_request_ms(json.loads, bodies)
    print("WSGIJSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
