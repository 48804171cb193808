"""An HTTP server on loopback standing in for an outside service (Slack, Application
Insights): it receives the real wire format and answers as a test scripts it."""
from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

# Recorded as the status of a request the server held past the client's timeout.
NO_ANSWER = 0


class Loopback:
    """Records every request and answers with ``respond(request number)``: (status,
    JSON-able body or text), or (``NO_ANSWER``, seconds) to hold the request that long, as
    a hung service does, and only then give ``late`` (by default a success: a client that
    ignored its own timeout would take it as delivered)."""

    def __init__(self, respond=None, *, late=(200, "ok")):
        self.requests: list[dict] = []
        self.respond = respond or (lambda n: (200, "ok"))
        self.late = late

    async def __aenter__(self) -> Loopback:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status, answer = self.respond(len(self.requests))
        self.requests.append({"path": request.path, "headers": dict(request.headers), "body": body, "status": status})
        if status == NO_ANSWER:
            await asyncio.sleep(answer)
            status, answer = self.late
        if isinstance(answer, str):
            return web.Response(status=status, text=answer)
        return web.json_response(answer, status=status)

    def json(self, status: int = 200) -> list:
        return [orjson.loads(r["body"]) for r in self.requests if r["status"] == status]
