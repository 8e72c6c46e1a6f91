from magent2.gateway.app import create_app
from magent2.gateway.routes.messages import SendRequest

__all__ = ["SendRequest", "create_app"]
