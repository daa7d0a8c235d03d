"""The floor: a WSGI app that reads the body and answers a canned AdmissionReview response, parsing nothing.

Served by the same `python -m tests.support.serve_app` (gunicorn with the webhook's asyncio worker, same TLS
context, same workers) as the webhook, so `ours / floor` isolates what the webhook's own code costs per request. The
canned response is a real one (the webhook's answer for the v2-train fixture pod: a ~3 KB JSONPatch),
so response bytes on the wire are comparable; it is computed once per worker at import.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]


def _canned() -> bytes:
    from benchmarks.reviews import admission_review, opted_in
    from tests.fixtures import pods as fixture_pods
    from webhook.admission.config import Settings
    from webhook.admission.review import review
    from webhook.server.namespaces import StaticNamespaces

    pod = opted_in(fixture_pods.load_pod("v2-train"))
    body = json.dumps(admission_review(pod, uid="00000000-0000-0000-0000-000000000000")).encode()
    outcome = review(body, StaticNamespaces(), Settings(watch_namespaces=False))
    assert outcome.response is not None
    return json.dumps(outcome.response.to_wire(), separators=(",", ":")).encode()


CANNED = _canned()
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(CANNED)))]
OK_HEADERS = [("Content-Type", "application/json"), ("Content-Length", "15")]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") != "/mutate":
        start_response("200 OK", OK_HEADERS)
        return [b'{"status":"ok"}']
    stream = environ["wsgi.input"]
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    while remaining > 0:  # drain the body (keep-alive needs it read) without looking at it
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        remaining -= len(chunk)
    start_response("200 OK", HEADERS)
    return [CANNED]


ECHO_ANNOTATION = "wkw-bench/floor"
_ECHO_PATCH = json.dumps([{"op": "add", "path": "/metadata/annotations/wkw-bench~1floor", "value": "1"}]).encode()
ECHO_HEAD = b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"'
ECHO_TAIL = b'","allowed":true,"patchType":"JSONPatch","patch":"' + __import__("base64").b64encode(_ECHO_PATCH) + b'"}}'


def echo_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The floor for the apiserver path: allowed with a canned one-annotation JSONPatch, echoing the request
    uid the apiserver checks. The uid is found with a byte search (request.uid is the first "uid" the
    apiserver writes), not a parse. Every fixture pod has annotations, so the patch always applies.
    """
    if environ.get("PATH_INFO") != "/mutate":
        start_response("200 OK", OK_HEADERS)
        return [b'{"status":"ok"}']
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start = body.find(b'"uid":"') + 7
    uid = body[start : body.find(b'"', start)]
    answer = ECHO_HEAD + uid + ECHO_TAIL
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))])
    return [answer]
