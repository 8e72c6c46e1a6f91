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


async def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(_gateway)]


async def authorize(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Bearer tokens from GATEWAY_API_TOKENS; none configured means no auth. Async on purpose:
    a sync dependency would cost a threadpool hop per request."""
    tokens = request.app.state.gateway.tokens
    if not tokens:
        return
    given = credentials.credentials.encode() if credentials else b""
    if not any(secrets.compare_digest(given, token) for token in tokens):
        raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


Authorized = [Depends(authorize)]
