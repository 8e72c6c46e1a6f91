"""Dependencies shared by the routes: what `create_app` put on `app.state`, and the bearer check.
All async on purpose: FastAPI runs a sync dependency in a threadpool, a thread hop per request."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from magent2.bus import Bus, Keys
from magent2.gateway.metrics import GatewayMetrics
from magent2.settings import GatewaySettings

_bearer = HTTPBearer(auto_error=False)


async def _bus(request: Request) -> Bus:
    bus: Bus = request.app.state.bus
    return bus


async def _keys(request: Request) -> Keys:
    keys: Keys = request.app.state.keys
    return keys


async def _settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def _metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


BusDep = Annotated[Bus, Depends(_bus)]
KeysDep = Annotated[Keys, Depends(_keys)]
SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
MetricsDep = Annotated[GatewayMetrics, Depends(_metrics)]


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
