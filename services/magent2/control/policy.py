"""`onNewMessage` between worker and gateway: workers publish their agent's card (`agent:{name}`)
when they start; the gateway reads it, a few seconds cached, when it accepts a message."""

from __future__ import annotations

import time

from pydantic import ValidationError

from magent2.bus import Bus, Keys
from magent2.contracts import AgentCard

CACHE_S = 5.0


async def publish_card(bus: Bus, keys: Keys, agent: str, card: AgentCard) -> None:
    await bus.put_value(keys.agent_card(agent), card.to_json())


class AgentCards:
    def __init__(self, bus: Bus, keys: Keys) -> None:
        self.bus, self.keys = bus, keys
        self._cache: dict[str, tuple[float, AgentCard]] = {}

    async def get(self, agent: str) -> AgentCard:
        """The agent's card; the defaults until a worker of it has published one."""
        cached = self._cache.get(agent)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        raw = await self.bus.get_value(self.keys.agent_card(agent))
        try:
            card = AgentCard.model_validate_json(raw) if raw else AgentCard()
        except ValidationError:
            card = AgentCard()
        self._cache[agent] = (time.monotonic() + CACHE_S, card)
        return card
