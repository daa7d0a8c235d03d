"""The embedded gunicorn: every option it accepts, our TLS context and worker, a transport that is never ambiguous."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration import tls_app
from tests.unit.server.tlskit import FakeClock, Pair, make_reloader, write_pair
from webhook.server import runner, tls
from webhook.server.connection import Limits
from webhook.server.worker import AsyncioWorker


def options(reloader: tls.CertificateReloader | None, access_log: bool = False) -> dict[str, Any]:
    return runner.build_gunicorn_options(
        host="::1",
        port=8443,
        workers=2,
        keepalive_s=15,
        timeout_s=30,
        graceful_timeout_s=15,
        log_level="info",
        access_log=access_log,
        reloader=reloader,
    )


def test_gunicorn_options_use_our_context_and_no_access_log(tmp_path: Path, pairs: list[Pair]) -> None:
    reloader = make_reloader(*write_pair(tmp_path / "live", pairs[0]), FakeClock())
    tls_options = options(reloader)
    assert tls_options["bind"] == ["[::1]:8443"]
    assert tls_options["worker_class"] == "webhook.server.worker.AsyncioWorker"
    assert tls_options["accesslog"] is None
    assert tls_options["certfile"] == reloader.cert_file
    ssl_context_hook = tls_options["ssl_context"]
    assert ssl_context_hook(None, None) is reloader.context
    plain_options = options(None, access_log=True)
    assert "ssl_context" not in plain_options and "certfile" not in plain_options
    assert plain_options["accesslog"] == "-"


def test_embedded_gunicorn_accepts_every_option(tmp_path: Path, pairs: list[Pair]) -> None:
    """Gunicorn validates settings (types, hook arity) when they are set, not when it runs."""
    reloader = make_reloader(*write_pair(tmp_path / "live", pairs[0]), FakeClock())
    embedded = runner._EmbeddedGunicorn(lambda: tls_app.app, options(reloader), Limits(max_connections=7))
    assert embedded.cfg.is_ssl
    assert embedded.cfg.ssl_context(embedded.cfg, None) is reloader.context
    assert embedded.cfg.worker_class is AsyncioWorker
    assert embedded.cfg.workers == 2 and embedded.http_limits.max_connections == 7
    assert embedded.load() is tls_app.app


def test_serve_refuses_ambiguous_transport() -> None:
    with pytest.raises(ValueError, match="cert_file and key_file"):
        runner.serve("tests.integration.tls_app:app", port=1)
    with pytest.raises(ValueError, match="mutually exclusive"):
        runner.serve("tests.integration.tls_app:app", port=1, plain_http=True, cert_file="x", key_file="y")
