"""One HTTP/1.1 connection of the server, parsed by h11, and the limits that bound what a client can hold.

Why not gunicorn's gthread worker: a thread belongs to a connection from its first byte until its
request is whole, so eight clients that send one byte and wait held every thread of a 2 x 4 server and
no pod was injected while they did. Here a waiting connection costs a small buffer and no thread:

* every request must arrive whole (headers and body) within ``request_timeout_s`` of its first byte, or
  of the connection's start for a new connection (TLS handshakes have their own bound); the
  connection then gets a 408 and is closed;
* an idle keep-alive connection is closed after ``keepalive_s``;
* a body over ``max_body_bytes`` gets a 413 whatever its transfer encoding (Content-Length or chunked),
  headers over ``max_header_bytes`` a 431; the bytes buffered by all waiting connections of a worker
  are capped (the largest buffers are dropped first), so memory stays bounded;
* at ``max_connections`` the oldest connection that has not completed a request is dropped (the
  apiserver's kept-alive connections have), so new clients are always accepted;
* while the worker drains before stopping (``drain_s`` after SIGTERM), every answer carries
  ``Connection: close`` and its connection is closed once it is sent, so a client that kept a connection
  open to this pod makes its next request on a new one, which the Service sends to another replica.

A complete request is answered at once, on the loop: the review of a pod is pure CPU work of well
under a millisecond, so a thread pool would only add hand-offs. The connection speaks WSGI to the app,
so Flask and the /mutate endpoint are unchanged.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11

log = logging.getLogger(__name__)


#: After an error answer, how long the client's remaining bytes are read and dropped before closing.
LINGER_S = 2.0


@dataclass(frozen=True)
class Limits:
    """Bounds on what one client can make a worker hold."""

    request_timeout_s: float = 10.0
    keepalive_s: float = 15.0
    handshake_timeout_s: float = 10.0
    max_body_bytes: int = 8 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    max_buffered_bytes: int = 64 * 1024 * 1024
    max_connections: int = 1000
    #: After SIGTERM, seconds to keep accepting and answering (every answer with `Connection: close`)
    #: before the listener closes; 0 stops at once.
    drain_s: float = 0.0


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _error_body(status: int, message: str) -> bytes:
    return b'{"error":"' + message.encode() + b'"}' if status != 204 else b""


class ConnectionPool:
    """The open connections of one worker, oldest first, and the bytes they buffer."""

    def __init__(self, limits: Limits, log_requests: bool = False) -> None:
        self.limits = limits
        self.log_requests = log_requests
        self.connections: dict[HttpConnection, None] = {}
        self.buffered = 0
        #: Stopping: each answer closes its connection, so a kept-alive client reconnects elsewhere.
        self.draining = False

    def add(self, connection: HttpConnection) -> None:
        self.connections[connection] = None
        while len(self.connections) > self.limits.max_connections:
            victim = self._oldest(lambda c: c.completed == 0 and c is not connection) or self._oldest(
                lambda c: c is not connection
            )
            if victim is None:
                break
            victim.drop("too many connections")

    def remove(self, connection: HttpConnection) -> None:
        self.connections.pop(connection, None)

    def _oldest(self, wanted: Callable[[HttpConnection], bool]) -> HttpConnection | None:
        return next((c for c in self.connections if wanted(c)), None)

    def grow(self, connection: HttpConnection, size: int) -> None:
        """Account for `size` more buffered bytes; drop the largest buffers while over the budget."""
        self.buffered += size
        while self.buffered > self.limits.max_buffered_bytes:
            victim = max(self.connections, key=lambda c: c.buffered, default=None)
            if victim is None or victim.buffered == 0:
                break
            victim.drop("too much buffered request data", status=503)

    def shrink(self, size: int) -> None:
        self.buffered = max(0, self.buffered - size)

    def close_all(self) -> None:
        for connection in list(self.connections):
            connection.drop("server stopping")


class HttpConnection(asyncio.Protocol):
    """One client connection: h11 state, the request being received, its deadline."""

    def __init__(self, pool: ConnectionPool, app: WSGIApp, scheme: str, server_port: int) -> None:
        self.pool = pool
        self.app = app
        self.scheme = scheme
        self.server_port = server_port
        self.limits = pool.limits
        self.parser = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header_bytes)
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None
        self.receiving = False  # some bytes of a request arrived and its deadline runs
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.buffered = 0
        self.completed = 0
        self.closed = False
        self.discarding = False  # an error was answered: what the client still sends is read and dropped
        self.peer = ""

    # --- asyncio callbacks -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.receiving = True  # a new connection is there to send a request: its deadline starts now
        self._arm(self.limits.request_timeout_s)
        self.pool.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed or self.discarding:
            return
        if not self.receiving:
            self.receiving = True
            self._arm(self.limits.request_timeout_s)
        self._account(len(data))
        if self.closed:  # the pool dropped this connection to stay within its buffer budget
            return
        try:
            self.parser.receive_data(data)
            self._process()
        except h11.RemoteProtocolError as problem:
            status = problem.error_status_hint
            message = "request header fields too large" if status == 431 else "malformed HTTP request"
            self._fail(status, message)

    def eof_received(self) -> bool | None:
        if not self.closed:
            try:
                self.parser.receive_data(b"")
                self._process()
            except h11.RemoteProtocolError:
                self._close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        self._release()
        self.pool.remove(self)

    # --- request handling ---------------------------------------------------------------------------
    def _process(self) -> None:
        while not self.closed:
            event = self.parser.next_event()
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self.request = event
                declared = _content_length(event.headers)
                if declared is not None and declared > self.limits.max_body_bytes:
                    self._fail(413, f"request body over {self.limits.max_body_bytes} bytes")
                    return
            elif isinstance(event, h11.Data):
                self.body += event.data
                if len(self.body) > self.limits.max_body_bytes:
                    self._fail(413, f"request body over {self.limits.max_body_bytes} bytes")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._respond()
                if self.closed:
                    return
                if self.parser.our_state is h11.MUST_CLOSE or self.parser.their_state is h11.MUST_CLOSE:
                    self._close()
                    return
                self.parser.start_next_cycle()
                self.receiving = bool(self.parser.trailing_data[0])
                self._arm(self.limits.request_timeout_s if self.receiving else self.limits.keepalive_s)
            elif isinstance(event, h11.ConnectionClosed):
                self._close()
                return

    def _respond(self) -> None:
        """Run the WSGI app on the whole request and send its answer."""
        assert self.request is not None
        request, body = self.request, bytes(self.body)
        self.request, self.body = None, bytearray()
        self._disarm()
        self._release()
        self.completed += 1
        self.receiving = False
        started = time.perf_counter()
        status, headers, payload = self._call_app(request, body)
        self._send(status, headers, payload, close=self.pool.draining)
        if self.pool.log_requests:
            log.info(
                "request",
                extra={
                    "method": request.method.decode("ascii", "replace"),
                    "path": request.target.decode("latin-1").partition("?")[0][:128],
                    "status": status,
                    "bytes": len(payload),
                    "ms": round((time.perf_counter() - started) * 1000, 3),
                },
            )

    def _call_app(self, request: h11.Request, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        environ = self._environ(request, body)
        answer: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., None]:
            answer[:] = [status, headers]
            return _no_write

        try:
            chunks = self.app(environ, start_response)
            try:
                payload = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
            status = int(str(answer[0]).split(" ", 1)[0])
            return status, list(answer[1]), payload
        except Exception as problem:  # noqa: BLE001 - one failed request never takes the worker down
            log.error("request failed inside the app", extra={"error": type(problem).__name__})
            return 500, [("Content-Type", "application/json")], _error_body(500, "internal error")

    def _environ(self, request: h11.Request, body: bytes) -> dict[str, Any]:
        target = request.target.decode("latin-1")
        path, _, query = target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method.decode("ascii", "replace"),
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "wandb-kfp-webhook",
            "SERVER_PORT": str(self.server_port),
            "SERVER_PROTOCOL": "HTTP/" + request.http_version.decode("ascii", "replace"),
            "REMOTE_ADDR": self.peer,
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": self.scheme,
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        for raw_name, raw_value in request.headers:
            name = raw_name.decode("latin-1").upper().replace("-", "_")
            if name in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
                continue
            value = raw_value.decode("latin-1")
            key = name if name == "CONTENT_TYPE" else "HTTP_" + name
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _send(self, status: int, headers: list[tuple[str, str]], payload: bytes, close: bool = False) -> None:
        if self.closed or self.transport is None:
            return
        if self.parser.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            self._close()
            return
        wire = [(name, value) for name, value in headers if name.lower() not in ("content-length", "connection")]
        wire.append(("Content-Length", str(len(payload))))
        if close:
            wire.append(("Connection", "close"))
        try:
            data = self.parser.send(h11.Response(status_code=status, headers=wire, reason=_reason(status)))
            data = (data or b"") + (self.parser.send(h11.Data(data=payload)) or b"") if payload else data or b""
            data += self.parser.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            self._close()
            return
        self.transport.write(data)

    # --- failures and limits --------------------------------------------------------------------------
    def _fail(self, status: int, message: str) -> None:
        """Answer an error and close. Written as is, not through h11: its state machine refuses a
        response before a whole request line arrived, which is exactly when a deadline or a limit hits."""
        if not self.closed and self.transport is not None:
            body = _error_body(status, message)
            head = (
                f"HTTP/1.1 {status} {_reason(status).decode()}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            self.transport.write(head + body)
            # Lingering close: a client still sending its body reads the answer instead of a reset.
            self.discarding = True
            self._release()
            self._arm(LINGER_S)
            return
        self._close()

    def drop(self, why: str, status: int = 503) -> None:
        """Closed by the pool (limits) or by the deadline; a client mid-request is told why."""
        if self.closed or self.discarding:
            self._close()
            return
        log.debug("dropping a connection: %s", why)
        if self.receiving and (self.request is not None or self.buffered):
            self._fail(status, why)
        else:
            self._close()

    def _on_deadline(self) -> None:
        self.timer = None
        if self.discarding:
            self._close()
        elif self.receiving and (self.request is not None or self.buffered):
            self._fail(408, f"request not received whole within {self.limits.request_timeout_s:g} seconds")
        else:
            self._close()

    def _account(self, size: int) -> None:
        self.buffered += size
        self.pool.grow(self, size)

    def _release(self) -> None:
        if self.buffered:
            self.pool.shrink(self.buffered)
            self.buffered = 0

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.timer = self.loop.call_later(seconds, self._on_deadline)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._disarm()
        self._release()
        self.pool.remove(self)
        if self.transport is not None:
            self.transport.close()


def _no_write(data: bytes) -> None:
    raise RuntimeError("the WSGI write() callable is not supported; return the body instead")


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
