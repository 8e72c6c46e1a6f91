"""`python -m magent2.gateway`: the gateway under uvicorn."""

from __future__ import annotations

import uvicorn

from magent2.gateway.app import create_app
from magent2.settings import GatewaySettings, load


def main(settings: GatewaySettings | None = None) -> None:
    settings = settings or load(GatewaySettings)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
