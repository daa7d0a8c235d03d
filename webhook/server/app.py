"""The Flask application: POST /mutate, GET /healthz, /readyz and /metrics.

POST /mutate is answered by a thin WSGI layer in front of Flask's request handling (Flask's documented
`app.wsgi_app` middleware hook): every pod creation in an opted-in namespace waits on it, and Flask's
request context, routing and Response objects cost more than the review itself. Everything else goes
through Flask. Whatever /mutate answers comes from `admission.review.review`; the HTTP status is decided
here: 400 for an invalid review, 405/413 for the wrong method or an oversized body, else 200.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from flask import Flask, Response
from pydantic_core import to_json

from webhook.admission.config import Settings, load_settings
from webhook.admission.review import OUTCOME_INJECTED, OUTCOME_INVALID, NamespaceLookup, review
from webhook.logs import bounded
from webhook.server import metrics
from webhook.server.namespaces import namespace_source

log = logging.getLogger(__name__)

#: An AdmissionReview holds one object (etcd caps objects near 1.5 MiB) plus envelope; refuse far larger.
MAX_BODY_BYTES = 8 * 1024 * 1024
MUTATE_PATH = "/mutate"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _json(body: object, status: int) -> Response:
    return Response(to_json(body), status=status, mimetype="application/json")


class AdmissionEndpoint:
    """POST /mutate as plain WSGI: read the body in one call, review it, answer JSON; the rest to Flask."""

    def __init__(self, flask_wsgi: WSGIApp, source: NamespaceLookup, settings: Settings) -> None:
        self._flask_wsgi = flask_wsgi
        self._source = source
        self._settings = settings

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != MUTATE_PATH:
            return self._flask_wsgi(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return self._answer(start_response, 405, {"error": "use POST with an AdmissionReview"})
        started = time.perf_counter()
        too_large = {"error": f"request body over {MAX_BODY_BYTES} bytes"}
        length_header = str(environ.get("CONTENT_LENGTH") or "")
        length = int(length_header) if length_header.isdigit() else None
        if length is not None and length > MAX_BODY_BYTES:
            return self._answer(start_response, 413, too_large)
        # Without a length (chunked), read at most one byte past the cap: a body is never read whole first.
        body = environ["wsgi.input"].read(length if length is not None else MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return self._answer(start_response, 413, too_large)
        outcome = review(body, self._source, self._settings)
        metrics.record(outcome.outcome, outcome.kind, time.perf_counter() - started)
        # Per-pod lines are DEBUG: at INFO every pod creation would contend on the log lock. The metrics
        # count every outcome; internal errors are logged at ERROR by the review itself.
        if outcome.outcome == OUTCOME_INJECTED:
            uid = bounded(outcome.uid, 64)
            log.debug("injected", extra={"uid": uid, "kind": outcome.kind, "reason": outcome.reason})
        if outcome.outcome == OUTCOME_INVALID or outcome.response is None:
            log.info("rejected a malformed review", extra={"reason": bounded(outcome.problem)})
            return self._answer(start_response, 400, {"error": outcome.problem})
        return self._answer(start_response, 200, outcome.response.to_wire())

    @staticmethod
    def _answer(start_response: Callable[..., Any], status: int, body: object) -> list[bytes]:
        payload = to_json(body)
        reason = HTTPStatus(status).phrase
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        if status == 405:
            headers.append(("Allow", "POST"))
        start_response(f"{status} {reason}", headers)
        return [payload]


def create_app(settings: Settings | None = None, namespaces: NamespaceLookup | None = None) -> Flask:
    """Build the app; with no settings it loads them from WANDB_KFP_WEBHOOK_* env and starts the namespace watch."""
    if settings is None:
        settings = load_settings()
    source = namespaces if namespaces is not None else namespace_source(settings.watch_namespaces)
    app = Flask("wandb-kfp-webhook")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.wsgi_app = AdmissionEndpoint(app.wsgi_app, source, settings)  # type: ignore[method-assign]

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
    def http_error(error: Exception) -> Response:
        code = int(getattr(error, "code", 400) or 400)
        return _json({"error": getattr(error, "description", "bad request")}, code)

    return app
