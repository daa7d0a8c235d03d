"""`python -m tests.support.serve_app module:app ...`: serve any WSGI app (a test app, the floor of the
benchmarks, the webhook) with the webhook's real server (`webhook.server.runner.serve`), from an import spec.

Only tests and benchmarks need to name an app by string; the product passes a factory.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from webhook.server.connection import Limits
from webhook.server.runner import DEFAULT_KEEPALIVE_S, serve
from webhook.server.tls import DEFAULT_RELOAD_INTERVAL_S

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def _required_parameter_count(candidate: Callable[..., object]) -> int:
    try:
        parameters = inspect.signature(candidate).parameters.values()
    except (TypeError, ValueError):
        return -1
    return sum(
        1
        for parameter in parameters
        if parameter.default is inspect.Parameter.empty
        and parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )


def resolve_app_spec(app_spec: str) -> Callable[..., object]:
    """Import ``module:attribute`` (attribute may be dotted, and may end in ``()``) without calling it."""
    module_name, separator, attribute_path = app_spec.partition(":")
    if not separator or not module_name or not attribute_path:
        raise ValueError(f"app spec must look like 'module:callable', got {app_spec!r}")
    target: Any = importlib.import_module(module_name)
    for attribute in attribute_path.removesuffix("()").split("."):
        target = getattr(target, attribute)
    if not callable(target):
        raise TypeError(f"{app_spec!r} is not callable")
    return cast("Callable[..., object]", target)


def materialize_app(target: Callable[..., object], *, call: bool = False) -> WSGIApplication:
    """Turn a factory into its app: a callable with no required argument is a factory, a WSGI app
    takes (environ, start_response)."""
    if call or _required_parameter_count(target) == 0:
        app = target()
        if not callable(app):
            raise TypeError("the app factory did not return a WSGI callable")
        return cast("WSGIApplication", app)
    return cast("WSGIApplication", target)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tests.support.serve_app module:app ...``: the server alone, for tests and benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.serve_app", description=main.__doc__)
    parser.add_argument("app_spec")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--cert-file")
    parser.add_argument("--key-file")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--request-timeout", type=float, default=Limits.request_timeout_s)
    parser.add_argument("--max-connections", type=int, default=Limits.max_connections)
    parser.add_argument("--plain-http", action="store_true")
    parser.add_argument("--reload-interval", type=float, default=DEFAULT_RELOAD_INTERVAL_S)
    parser.add_argument("--keepalive", type=int, default=DEFAULT_KEEPALIVE_S)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)
    target = resolve_app_spec(args.app_spec)
    call = args.app_spec.endswith("()")
    serve(
        lambda: materialize_app(target, call=call),
        host=args.host,
        port=args.port,
        cert_file=args.cert_file,
        key_file=args.key_file,
        workers=args.workers,
        request_timeout_s=args.request_timeout,
        max_connections=args.max_connections,
        plain_http=args.plain_http,
        reload_interval_s=args.reload_interval,
        keepalive_s=args.keepalive,
        log_level=args.log_level,
        access_log=args.access_log,
    )


if __name__ == "__main__":
    main()
