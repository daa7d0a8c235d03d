"""The gunicorn worker that serves the webhook: one asyncio event loop per worker process.

gunicorn still runs the processes (master, heartbeat, restarts, graceful stop, the TLS context from
``ssl_context``); this worker replaces what happens inside one: it serves `connection.HttpConnection`s on
the master's listening sockets, with the limits the `runner` hands over on the application object.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from gunicorn.workers.base import Worker

from webhook.server.connection import ConnectionPool, HttpConnection, Limits

log = logging.getLogger(__name__)

#: Read buffer of each TLS connection. asyncio allocates (and zero-fills) `SSLProtocol.max_size` bytes per
#: connection, 256 KiB by default: 1,000 held connections would pin 250 MiB. A TLS record is at most
#: 16 KiB + overhead, so 32 KiB costs no extra round of reads.
TLS_READ_BUFFER_BYTES = 32 * 1024


class Acceptor:
    """Accepts connections on a listening socket all workers share: one per readiness event.

    asyncio's own server accepts up to `backlog` connections per event, so the first worker to wake takes
    a whole burst (a client opening 32 kept-alive connections at once lands on one core). Taking one at a
    time lets whichever worker is idle take the next, which spreads connections over the workers.
    """

    #: Pause after the process ran out of file descriptors, before accepting again (no busy loop).
    RETRY_AFTER_EMFILE_S = 0.1

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        context: ssl.SSLContext | None,
        handshake_timeout_s: float,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.factory = factory
        self.context = context
        self.handshake_timeout_s = handshake_timeout_s if context is not None else None
        self.closed = False
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        try:
            connection, _address = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up
        except OSError as error:
            if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                log.warning("cannot accept connections for now", extra={"error": errno.errorcode[error.errno]})
                self.loop.remove_reader(self.sock.fileno())
                self.loop.call_later(self.RETRY_AFTER_EMFILE_S, self._resume)
            return
        connection.setblocking(False)
        started = self.loop.connect_accepted_socket(
            self.factory, connection, ssl=self.context, ssl_handshake_timeout=self.handshake_timeout_s
        )
        self.loop.create_task(started).add_done_callback(functools.partial(_forget_failed, connection))

    def _resume(self) -> None:
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())


def _forget_failed(connection: socket.socket, task: asyncio.Task[Any]) -> None:
    """A connection whose TLS handshake failed or timed out: closed, the error taken (nothing to log)."""
    if not task.cancelled() and task.exception() is not None:
        connection.close()


class AsyncioWorker(Worker):  # type: ignore[misc]  # gunicorn ships no type hints
    """A gunicorn worker process running the event loop above on the master's listening sockets."""

    HEARTBEAT_S = 1.0

    def run(self) -> None:
        # The gunicorn application object travels to the worker with the fork: it carries the limits.
        self.limits = getattr(self.app, "http_limits", None) or Limits()
        from asyncio import sslproto

        if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER_BYTES:
            sslproto.SSLProtocol.max_size = TLS_READ_BUFFER_BYTES  # type: ignore[attr-defined]
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(loop))
        finally:
            loop.close()

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.cfg.is_ssl:
            return None
        from gunicorn import sock as gunicorn_sock

        context: ssl.SSLContext = gunicorn_sock.ssl_context(self.cfg)
        return context

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        pool = ConnectionPool(self.limits, log_requests=bool(self.cfg.accesslog))
        context = self._ssl_context()
        scheme = "https" if context is not None else "http"
        servers = []
        for listener in self.sockets:
            sock = listener.sock
            port = sock.getsockname()[1] if sock.family != getattr(socket, "AF_UNIX", None) else 0
            factory = functools.partial(HttpConnection, pool, self.wsgi, scheme, port)
            servers.append(Acceptor(loop, sock, factory, context, self.limits.handshake_timeout_s))
        parent = self.ppid
        orphaned = False
        while self.alive:
            self.notify()
            if os.getppid() != parent:
                log.info("parent changed, shutting down")
                orphaned = True
                break
            await asyncio.sleep(self.HEARTBEAT_S)
        stopping = time.monotonic()
        # gunicorn's master kills workers `graceful_timeout` after its own SIGTERM; keep a margin for the
        # heartbeat above (SIGTERM is noticed up to HEARTBEAT_S late) and the final close.
        budget = max(0.0, float(self.cfg.graceful_timeout) - 2 * self.HEARTBEAT_S)
        drain = 0.0 if orphaned else min(self.limits.drain_s, budget)
        if drain > 0:
            await self._drain(pool, stopping + drain)
        for server in servers:
            server.close()
        deadline = stopping + budget
        while any(c.receiving for c in pool.connections) and time.monotonic() < deadline:
            self.notify()
            await asyncio.sleep(0.1)
        pool.close_all()
        await asyncio.sleep(0)

    async def _drain(self, pool: ConnectionPool, until: float) -> None:
        """Keep serving, listener open, until `until`; every answer closes its connection.

        A pod being deleted leaves its Service's endpoints while it gets SIGTERM, but kube-proxy (or
        whatever routes the apiserver's calls) needs a moment to stop sending new connections here, and
        the connections the apiserver keeps alive stay pinned to this pod. A closed port or a closed
        kept-alive connection fails that call, and with failurePolicy Ignore the pod is then created
        without injection. Serving on while answering `Connection: close` moves every caller to a new
        connection, which goes to another replica; what is still open at the end has had its chance.
        """
        pool.draining = True
        log.info("stopping: draining connections for %.1f s", until - time.monotonic())
        while time.monotonic() < until:
            self.notify()
            await asyncio.sleep(0.1)
