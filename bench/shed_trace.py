"""Per-request timestamps on the server, for finding where a shed answer's time goes (bench only).

``uvicorn --factory bench.shed_trace:create_app`` serves `service.app.create_app` wrapped in
`Trace`, an outermost ASGI middleware that records, for each request carrying an
``x-bench-id`` header: when the app first saw it, when its response started and ended
(``time.monotonic``, CLOCK_MONOTONIC: the same clock in every process of the host, so the
load generator's own timestamps line up with these), its status, whether it was routed
(a 503 that was routed was refused after parsing) and how many requests were in the app at
that moment. ``GET /__trace`` returns the records as JSON and clears them.

The service never imports this module.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.app import create_app as create_service_app


class Trace:
    """Outermost ASGI middleware: a timestamp record per traced request (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.records: list[dict[str, Any]] = []
        self.in_app = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/__trace":
            body = orjson.dumps(self.records)
            self.records = []
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        rid = dict(scope["headers"]).get(b"x-bench-id")
        if rid is None:
            await self.app(scope, receive, send)
            return
        rec: dict[str, Any] = {
            "id": int(rid),
            "enter": time.monotonic(),
            "in_app": self.in_app,
        }

        async def traced_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                rec["status"] = message["status"]
                rec["start"] = time.monotonic()
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                rec["end"] = time.monotonic()

        self.in_app += 1
        try:
            await self.app(scope, receive, traced_send)
        finally:
            self.in_app -= 1
            rec["routed"] = scope.get("route") is not None
            self.records.append(rec)


def create_app() -> ASGIApp:
    """The service app (settings from the environment) inside `Trace`."""
    return Trace(create_service_app())
