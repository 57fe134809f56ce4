"""A scripted HTTP server on 127.0.0.1 for client tests: real sockets, real HTTP, no mocked transport.

    server.script("/api/x", Reply(429, headers={"Retry-After": "3"}), Reply(200, json={"ok": True}))

answers the scripted replies in order (the last one repeats) and records every request. A route can also
be a function of the recorded request, for endpoints with logic (an OAuth token endpoint, Vault), and a
script may hold such functions among its replies.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Reply:
    status: int = 200
    json: Any = None
    body: bytes | str | None = None
    headers: dict = field(default_factory=dict)
    content_type: str | None = None

    def to_response(self) -> Response:
        if self.json is not None:
            return Response(
                json.dumps(self.json),
                status=self.status,
                headers=self.headers,
                content_type=self.content_type or "application/json",
            )
        return Response(
            self.body or b"", status=self.status, headers=self.headers, content_type=self.content_type
        )


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


Handler = Callable[[Recorded], Reply]


class ScriptedServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Reply | Handler]] = {}
        self._handlers: list[tuple[str, Handler]] = []
        self.requests: list[Recorded] = []
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll interval makes shutdown() (once per test) quick.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, path: str, *replies: Reply | Handler) -> None:
        with self._lock:
            self._scripts[path] = list(replies)

    def route(self, prefix: str, handler: Handler) -> None:
        """Every request whose path starts with ``prefix`` is answered by ``handler``."""
        with self._lock:
            self._handlers.append((prefix, handler))

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def _next_reply(self, recorded: Recorded) -> Reply:
        with self._lock:
            replies = self._scripts.get(recorded.path)
            handlers = [h for prefix, h in self._handlers if recorded.path.startswith(prefix)]
            if replies:
                reply = replies.pop(0) if len(replies) > 1 else replies[0]
            elif handlers:
                reply = handlers[0]
            else:
                reply = Reply(404, json={"error": {"message": "Not scripted", "detail": recorded.path}})
        # Handlers run outside the lock: one may be slow on purpose.
        return reply if isinstance(reply, Reply) else reply(recorded)

    @Request.application
    def _app(self, request: Request) -> Response:
        recorded = Recorded(
            method=request.method,
            path=request.path,
            query={k: request.args.getlist(k) for k in request.args},
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.get_data(),
        )
        with self._lock:
            self.requests.append(recorded)
        return self._next_reply(recorded).to_response()
