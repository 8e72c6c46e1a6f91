"""The agents panel: each agent with its live status; selecting one talks to it."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Label, ListItem, ListView


class AgentItem(ListItem):
    def __init__(self, agent: dict[str, Any]) -> None:
        self.agent_name = str(agent["name"])
        alive = int(agent["workers_alive"])
        line = Text.assemble(
            ("● " if alive else "○ ", "green" if alive else "red"),
            (self.agent_name, "bold"),
            f"\n  workers {alive} · backlog {agent['backlog']}\n  running {agent['in_flight']}",
        )
        if agent.get("awaiting_approval"):
            line.append(f" · {agent['awaiting_approval']} need approval", "yellow")
        super().__init__(Label(line))


class AgentList(ListView):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shown: list[dict[str, Any]] = []

    async def show(self, agents: list[dict[str, Any]]) -> None:
        facts = [{k: v for k, v in a.items() if k != "last_activity"} for a in agents]
        if facts == self.shown:  # unchanged: keep the highlight where the user left it
            return
        self.shown = facts
        index = self.index
        await self.clear()
        await self.extend([AgentItem(agent) for agent in agents])
        if index is not None and agents:
            self.index = min(index, len(agents) - 1)
