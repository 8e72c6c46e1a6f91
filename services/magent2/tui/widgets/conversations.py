"""The conversations panel: recent conversations (newest first); selecting one reopens it."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Label, ListItem, ListView

STATUS_STYLE = {"running": "green", "awaiting_approval": "yellow", "idle": "dim"}


class ConversationItem(ListItem):
    def __init__(self, conversation: dict[str, Any]) -> None:
        self.conversation_id = str(conversation["id"])
        status = str(conversation["status"])
        line = Text.assemble(
            (self.conversation_id, "bold"),
            f"\n  {', '.join(conversation['agents'])} · {conversation['messages']} msg\n  ",
            (status.replace("_", " "), STATUS_STYLE.get(status, "")),
        )
        super().__init__(Label(line))


class ConversationList(ListView):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shown: list[tuple[str, str, int]] = []

    async def show(self, conversations: list[dict[str, Any]]) -> None:
        facts = [(c["id"], c["status"], c["messages"]) for c in conversations]
        if facts == self.shown:
            return
        self.shown = facts
        index = self.index
        await self.clear()
        await self.extend([ConversationItem(c) for c in conversations])
        if index is not None and conversations:
            self.index = min(index, len(conversations) - 1)
