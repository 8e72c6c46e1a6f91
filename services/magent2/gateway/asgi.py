"""`uvicorn magent2.gateway.asgi:app` — the gateway configured from the environment."""

from magent2.gateway.app import create_app
from magent2.settings import GatewaySettings, load

app = create_app(load(GatewaySettings))
