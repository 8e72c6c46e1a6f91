"""Which agents POST /send may address, so a mistyped recipient gets a 404 instead of an inbox
nobody reads: the agents named at start (local mode) or, with Redis, every agent whose inbox
exists (a worker of it started at least once). A hit is remembered; a miss costs one EXISTS."""

from __future__ import annotations

from magent2.bus import Bus, Keys


class AgentDirectory:
    def __init__(self, bus: Bus, keys: Keys, *, fixed: list[str] | None = None) -> None:
        self.bus, self.keys, self.fixed = bus, keys, fixed
        self._seen: set[str] = set()

    async def knows(self, agent: str) -> bool:
        if self.fixed is not None:
            return agent in self.fixed
        if agent not in self._seen and await self.bus.exists(self.keys.inbox(agent)):
            self._seen.add(agent)
        return agent in self._seen

    async def known(self) -> list[str]:
        """Every known agent (for error messages: this one scans the keys)."""
        if self.fixed is not None:
            return sorted(self.fixed)
        inboxes = await self.bus.streams(self.keys.inbox_prefix)
        return sorted(inbox.removeprefix(self.keys.inbox_prefix) for inbox in inboxes)
