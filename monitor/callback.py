"""The WebSub callback endpoint: the aiohttp app hubs call.

``GET <path>/<feed>/<token>`` is a hub's verification of intent (answered
with ``hub.challenge`` only for a request we made); ``POST`` is a content
delivery (202 at once, processed in the background). What to answer is the
``CallbackHandler``'s decision; this module only speaks HTTP.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web


class CallbackHandler(Protocol):
    async def verify(
        self, feed: str, token: str, query: dict[str, str]
    ) -> tuple[int, str]:  # status, body (the challenge)
        ...

    async def deliver(
        self, feed: str, token: str, body: bytes, content_type: str | None, signature: str | None
    ) -> int:  # status
        ...


def callback_app(handler: CallbackHandler, path: str, max_body_bytes: int) -> web.Application:
    """Routes ``<path>/{feed}/{token}``; bodies over ``max_body_bytes`` get 413."""
    route = f"{path.rstrip('/')}/{{feed}}/{{token}}"

    async def on_get(request: web.Request) -> web.Response:
        feed, token = request.match_info["feed"], request.match_info["token"]
        status, text = await handler.verify(feed, token, dict(request.query))
        return web.Response(status=status, text=text, content_type="text/plain")

    async def on_post(request: web.Request) -> web.Response:
        feed, token = request.match_info["feed"], request.match_info["token"]
        if request.content_length is not None and request.content_length > max_body_bytes:
            return web.Response(status=413, text="too large")
        body = await request.read()  # client_max_size caps a chunked body too
        status = await handler.deliver(
            feed, token, body, request.headers.get("Content-Type"),
            request.headers.get("X-Hub-Signature"),
        )  # fmt: skip
        return web.Response(status=status)

    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_get(route, on_get)
    app.router.add_post(route, on_post)
    return app
