"""The gateway app put together: settings, bus, middleware, error handlers and the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from magent2 import __version__
from magent2.bus import Bus, BusUnavailable, Keys
from magent2.bus.build import build_bus
from magent2.console import routes as console
from magent2.control.policy import AgentCards
from magent2.gateway import hot, problems
from magent2.gateway.deps import Gateway
from magent2.gateway.directory import AgentDirectory
from magent2.gateway.hub import StreamHub
from magent2.gateway.metrics import GatewayMetrics, RequestCounter
from magent2.gateway.routes import agents, control, conversations, messages, ops
from magent2.observer.index import ObserverIndex
from magent2.observer.queries import Observer
from magent2.settings import GatewaySettings


class GatewayApp(FastAPI):
    """FastAPI, but POST /send and GET /stream/{id} are answered by `gateway.hot` before FastAPI's
    middleware and routing; their requests are counted here instead of by `RequestCounter`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = hot.route(scope) if scope["type"] == "http" else None
        if found is None:
            await super().__call__(scope, receive, send)
        else:
            await hot.serve(self.state.gateway, found, scope, receive, send)


def create_app(
    settings: GatewaySettings | None = None, *, bus: Bus | None = None, known_agents: list[str] | None = None
) -> GatewayApp:
    """The gateway app. Without `bus`, it owns one built from `settings` (Redis or in-memory).
    `known_agents`: the only recipients /send accepts (local mode); else those with an inbox."""
    settings = settings or GatewaySettings()
    owns_bus = bus is None
    the_bus = bus or build_bus(settings)
    metrics = GatewayMetrics()
    keys = Keys(settings.bus_prefix)
    hub = StreamHub(
        the_bus,
        keys,
        readers=settings.stream_readers,
        block_ms=int(settings.heartbeat_seconds * 1000),
        buffer=settings.stream_buffer_events,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await hub.close()
        if owns_bus:
            await the_bus.close()

    app = GatewayApp(
        title="magent2 gateway",
        version=__version__,
        description="Send messages to agents and stream their conversations over server-sent events.",
        lifespan=lifespan,
    )
    app.add_middleware(RequestCounter, metrics=metrics)
    app.state.gateway = Gateway(
        bus=the_bus,
        keys=keys,
        settings=settings,
        metrics=metrics,
        hub=hub,
        directory=AgentDirectory(the_bus, keys, fixed=known_agents),
        cards=AgentCards(the_bus, keys),
        index=ObserverIndex(
            keys, keep=settings.observer_max_conversations, ttl_s=settings.events_ttl_seconds
        ),
        observer=Observer(the_bus, keys),
        tokens=[token.encode() for token in settings.api_tokens],
    )
    app.add_exception_handler(RequestValidationError, _bad_request)  # type: ignore[arg-type]
    app.add_exception_handler(BusUnavailable, _bus_unavailable)  # type: ignore[arg-type]
    for module in (messages, control, conversations, agents, ops, console):
        app.include_router(module.router)
    return app


async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    status, body = problems.invalid(exc.errors())
    return JSONResponse(body, status_code=status)


async def _bus_unavailable(_: Request, exc: BusUnavailable) -> JSONResponse:
    return JSONResponse(problems.unavailable(exc, None), status_code=503, headers={"Retry-After": "1"})
