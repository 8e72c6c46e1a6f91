"""Dependencies shared by the routes: the gateway's parts `create_app` put on `app.state`, and the
bearer check.
All async on purpose: FastAPI runs a sync dependency in a threadpool, a thread hop per request."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from magent2.bus import Bus, Keys
from magent2.control.policy import AgentCards
from magent2.gateway.directory import AgentDirectory
from magent2.gateway.hub import StreamHub
from magent2.gateway.metrics import GatewayMetrics
from magent2.observer.index import ObserverIndex
from magent2.observer.queries import Observer
from magent2.settings import GatewaySettings

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Gateway:
    """The parts routes use, put together once by `create_app`. One dependency rather than one
    per part: FastAPI solves every dependency again on every request."""

    bus: Bus
    keys: Keys
    settings: GatewaySettings
    metrics: GatewayMetrics
    hub: StreamHub
    directory: AgentDirectory
    cards: AgentCards
    index: ObserverIndex
    observer: Observer
    tokens: list[bytes] = field(default_factory=list)

    def admits(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header value carries one of GATEWAY_API_TOKENS as a bearer
        token; with none configured, every request is admitted."""
        if not self.tokens:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            given = ""
        return any(secrets.compare_digest(given.strip().encode(), token) for token in self.tokens)


UNAUTHORIZED = "missing or invalid bearer token"


async def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(_gateway)]


async def authorize(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Bearer tokens from GATEWAY_API_TOKENS (`Gateway.admits`); the HTTPBearer dependency only
    declares the scheme for the docs. Async on purpose: a sync dependency would cost a threadpool
    hop per request."""
    if not request.app.state.gateway.admits(request.headers.get("authorization")):
        raise HTTPException(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


Authorized = [Depends(authorize)]
