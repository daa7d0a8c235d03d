"""A local HTTP server that answers the requests an online wandb run makes, so a run starts and finishes
online on loopback: GraphQL (`UpsertBucket` and the other queries get an empty `data`; `CreateRunFiles`
gets an upload URL per file on this server), the file stream, and the file uploads. Artifacts are not
served. It records each request (method, path, GraphQL operation, variables) for the test to read.
"""

from __future__ import annotations

import http.server
import json
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    operation: str = ""
    variables: dict[str, Any] = field(default_factory=dict)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path)
        answer: dict[str, Any] = {"data": {}}
        if self.path.startswith("/graphql"):
            try:
                document = json.loads(body)
            except ValueError:
                document = {}
            query = str(document.get("query", ""))
            request.operation = query.split("(")[0].split("{")[0].strip()
            request.variables = document.get("variables") or {}
            if request.operation.endswith("CreateRunFiles"):
                base = f"http://127.0.0.1:{self.server.server_address[1]}/upload/"
                files = [{"name": name, "uploadUrl": base + name} for name in request.variables.get("files", [])]
                answer = {"data": {"createRunFiles": {"runID": "run", "uploadHeaders": [], "files": files}}}
        self.server.requests.append(request)
        raw = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: Any) -> None:
        return


class _Server(http.server.ThreadingHTTPServer):
    requests: list[Request]


class LocalWandbServer:
    """`with LocalWandbServer() as server:` then `server.url` is a WANDB_BASE_URL on loopback."""

    def __enter__(self) -> LocalWandbServer:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.requests = []
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Request]:
        return list(self._server.requests)

    def operations(self) -> list[str]:
        return [request.operation for request in self.requests if request.operation]

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
