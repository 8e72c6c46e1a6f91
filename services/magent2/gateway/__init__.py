from magent2.gateway.app import SendRequest, create_app

__all__ = ["SendRequest", "create_app"]
