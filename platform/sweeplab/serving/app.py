"""The Starlette app: POST /predict, GET /health, GET /metadata; 4xx for every bad request.

Requests that arrive while the model is busy go to it together (``batching``).
With a token, /predict and /metadata answer only a request that carries it
(``Authorization: Bearer TOKEN``); any other gets 401 before its body is read. /health
stays open, for a load balancer's checks.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from sweeplab.serving.batching import Batcher
from sweeplab.serving.holder import ModelHolder
from sweeplab.serving.inputs import BadRequest, parse_rows, parse_texts

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def create_app(
    holder: ModelHolder,
    *,
    max_batch: int = 1024,
    max_bytes: int = 8 * 1024 * 1024,
    allowed_hosts: Sequence[str] = LOOPBACK,
    token: str | None = None,
    batching: bool = True,
) -> Starlette:
    """The service of ``holder``'s model; Host headers outside ``allowed_hosts`` get 400;
    with ``token``, a request to /predict or /metadata without it gets 401; with
    ``batching``, requests that wait for the model go to it together (``Batcher``)."""
    batcher = Batcher(max_rows=max_batch) if batching else None

    async def predict(request: Request) -> JSONResponse:
        loaded = holder.current
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            # a form or text/plain body is one a web page can post without a CORS preflight
            return _error(
                415, f"Content-Type is {kind or 'missing'!r}; /predict takes application/json"
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            return _error(413, f"request body is {declared} bytes; the limit is {max_bytes}")
        try:
            body = await request.body()
            if loaded.text:
                rows = parse_texts(body, max_batch, max_bytes)
            else:
                rows = parse_rows(body, loaded.n_features, max_batch, max_bytes)
        except BadRequest as exc:
            return _error(exc.status, exc.message)
        if batcher is None:
            answer: dict[str, Any] = await run_in_threadpool(loaded.predict, rows)
        else:
            answer = loaded.answer(await batcher.outputs(loaded, rows))
        return JSONResponse({"model": holder.ref.name, **answer})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": holder.current.version})

    async def metadata(request: Request) -> JSONResponse:
        meta = dict(holder.current.metadata)
        meta["max_batch"] = max_batch
        if batcher is not None:  # how many requests each model call answered so far
            meta["batching"] = {"model_calls": batcher.calls, "requests": batcher.answered}
        return JSONResponse(meta)

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return _error(
            404, f"no route {request.url.path}; try POST /predict, GET /health, GET /metadata"
        )

    async def wrong_method(request: Request, exc: Exception) -> JSONResponse:
        return _error(405, f"{request.method} is not allowed on {request.url.path}")

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metadata", metadata, methods=["GET"]),
        ],
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
            *([Middleware(BearerToken, token=token)] if token else []),
        ],
        exception_handlers={404: not_found, 405: wrong_method},
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


OPEN_PATHS = frozenset({"/health"})


class BearerToken:
    """401 for a request without ``Authorization: Bearer <token>`` (but to /health).

    An ASGI middleware of its own, not Starlette's AuthenticationMiddleware: that one
    needs a backend class and still lets every route through unless each is decorated;
    this refuses before a route runs or a body is read. The token is compared in
    constant time (``hmac.compare_digest``).
    """

    def __init__(self, app: ASGIApp, *, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        said = "a wrong token" if given else "no Authorization header"
        body = json.dumps({"error": f"{said}; send Authorization: Bearer <token>"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
