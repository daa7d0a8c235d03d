"""HTTPS requests from inside a container's network namespace (the tests run it with `nsenter --net`).

Containers here get `--network=none`, so the webhook's port exists only in its own network namespace; this
client joins it and connects to 127.0.0.1 while verifying the certificate against the CA for the Service
name, as the kube-apiserver does. Standard library only.

stdin: {"port": 8443, "ca": PATH, "server_name": NAME, "wait_seconds": 120,
        "requests": [{"method": "GET", "path": "/healthz", "body": null}, ...]}
stdout: [{"status": 200, "body": "..."}, ...]
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import sys
import time


class _Connection(http.client.HTTPSConnection):
    """Connects to 127.0.0.1 but sends SNI and checks the certificate for the Service's DNS name."""

    def __init__(self, server_name: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(server_name, port, context=context, timeout=30)
        self._tls_context = context

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._tls_context.wrap_socket(sock, server_hostname=self.host)


def _request(spec: dict, request: dict, context: ssl.SSLContext) -> dict:
    deadline = time.monotonic() + float(spec.get("wait_seconds", 0))
    while True:
        connection = _Connection(spec["server_name"], int(spec["port"]), context)
        try:
            body = request.get("body")
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(request.get("method", "GET"), request["path"], body=body, headers=headers)
            response = connection.getresponse()
            return {"status": response.status, "body": response.read().decode()}
        except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            connection.close()


def main() -> int:
    spec = json.load(sys.stdin)
    context = ssl.create_default_context(cafile=spec["ca"])
    results = [_request(spec, request, context) for request in spec["requests"]]
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
