"""The Flask application: POST /mutate, GET /healthz, /readyz and /metrics.

The view is the only place request I/O happens; everything it answers comes from `admission.review`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from flask import Flask, Response, request
from pydantic_core import to_json
from werkzeug.exceptions import RequestEntityTooLarge

from webhook import metrics
from webhook.admission import OUTCOME_INJECTED, NamespaceLookup, review
from webhook.config import Settings, load_settings
from webhook.namespaces import namespace_source

log = logging.getLogger("webhook.access")

#: Env var naming the settings file, so every server worker loads the same settings as the CLI.
CONFIG_FILE_ENV = "WANDB_KFP_WEBHOOK_CONFIG_FILE"
#: An AdmissionReview holds one object (etcd caps objects near 1.5 MiB) plus envelope; refuse far larger.
MAX_BODY_BYTES = 8 * 1024 * 1024


def _json(body: object, status: int) -> Response:
    return Response(to_json(body), status=status, mimetype="application/json")


def _body() -> bytes:
    """The request body, read in one call when its length is known (werkzeug's stream reads in chunks)."""
    length = request.content_length
    if length is None:
        return request.get_data(cache=False)
    if length > MAX_BODY_BYTES:
        raise RequestEntityTooLarge()
    body: bytes = request.environ["wsgi.input"].read(length)
    return body


def create_app(settings: Settings | None = None, namespaces: NamespaceLookup | None = None) -> Flask:
    """Build the app; with no arguments it loads settings from env/file and starts the namespace watch."""
    if settings is None:
        config_file = os.environ.get(CONFIG_FILE_ENV)
        settings = load_settings(Path(config_file) if config_file else None)
    source = namespaces if namespaces is not None else namespace_source(settings.watch_namespaces)
    app = Flask("wandb-kfp-webhook")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @app.post("/mutate")
    def mutate() -> Response:
        started = time.perf_counter()
        result = review(request.get_data(cache=False), source, settings)
        metrics.record(result.outcome, result.kind, time.perf_counter() - started)
        if result.outcome == OUTCOME_INJECTED:
            log.info(
                "injected uid=%s kind=%s reason=%s",
                result.body["response"]["uid"],
                result.kind,
                result.reason,
            )
        elif result.status != 200:
            log.info("rejected malformed review: %s", result.reason)
        return _json(result.body, result.status)

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"status": "ok"}, 200)

    @app.get("/readyz")
    def readyz() -> Response:
        ready = getattr(source, "ready", lambda: True)()
        return _json({"status": "ready" if ready else "namespace cache not synced"}, 200 if ready else 503)

    @app.get("/metrics")
    def metrics_view() -> Response:
        payload, content_type = metrics.exposition()
        return Response(payload, status=200, content_type=content_type)

    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    def http_error(error: Exception) -> Response:
        code = int(getattr(error, "code", 400) or 400)
        return _json({"error": getattr(error, "description", "bad request")}, code)

    return app
