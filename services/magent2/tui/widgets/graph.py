"""Who talked to whom in the current conversation (and the child conversations it started)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


class GraphView(Static):
    def show(self, conversation_id: str, graph: dict[str, Any] | None) -> None:
        text = Text.assemble(("who talked to whom\n", "bold"), (f"{conversation_id}\n\n", "dim"))
        if graph is None:
            text.append("no messages yet")
        else:
            for edge in graph["edges"]:
                text.append(f"{edge['from']}\n  → {edge['to']}  ({edge['messages']})\n")
            children = graph["conversations"][1:]
            if children:
                text.append(f"\n{len(children)} child conversation(s)\n", "bold")
                text.append("\n".join(f"  {child}" for child in children))
        self.update(text)
