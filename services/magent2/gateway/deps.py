"""Dependencies shared by the routes: what `create_app` put on `app.state`, and the bearer check.
All async on purpose: FastAPI runs a sync dependency in a threadpool, a thread hop per request."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from magent2.bus import Bus, Keys
from magent2.gateway.directory import AgentDirectory
from magent2.gateway.hub import StreamHub
from magent2.gateway.metrics import GatewayMetrics
from magent2.settings import GatewaySettings

_bearer = HTTPBearer(auto_error=False)


def _from_state(name: str) -> Callable[[Request], Awaitable[Any]]:
    async def get(request: Request) -> Any:
        return getattr(request.app.state, name)

    return get


BusDep = Annotated[Bus, Depends(_from_state("bus"))]
KeysDep = Annotated[Keys, Depends(_from_state("keys"))]
SettingsDep = Annotated[GatewaySettings, Depends(_from_state("settings"))]
MetricsDep = Annotated[GatewayMetrics, Depends(_from_state("metrics"))]
HubDep = Annotated[StreamHub, Depends(_from_state("hub"))]
DirectoryDep = Annotated[AgentDirectory, Depends(_from_state("directory"))]


async def authorize(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Bearer tokens from GATEWAY_API_TOKENS; none configured means no auth. Async on purpose:
    a sync dependency would cost a threadpool hop per request."""
    tokens: list[bytes] = request.app.state.tokens
    if not tokens:
        return
    given = credentials.credentials.encode() if credentials else b""
    if not any(secrets.compare_digest(given, token) for token in tokens):
        raise HTTPException(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


Authorized = [Depends(authorize)]
