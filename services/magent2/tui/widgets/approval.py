"""The approval prompt: a tool call waits for a person's decision."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ApprovalScreen(ModalScreen[bool | None]):
    """Dismissed with True (approve), False (reject) or None (decide later)."""

    BINDINGS = [
        Binding("y", "decide(True)", "Approve"),
        Binding("n", "decide(False)", "Reject"),
        Binding("escape", "decide(None)", "Later"),
    ]

    def __init__(self, request: dict[str, Any]) -> None:
        super().__init__()
        self.request = request

    def compose(self) -> ComposeResult:
        arguments = json.dumps(self.request.get("arguments", {}), indent=2, ensure_ascii=False)
        with Vertical(id="approval"):
            yield Static(Text(f"Approve {self.request['tool']}?", style="bold"))
            yield Static(Text(arguments), id="arguments")
            yield Static(Text(f"expires {self.request.get('expires_at', '')}", style="dim"))
            with Horizontal(id="choices"):
                yield Button("Approve (y)", id="approve", variant="success")
                yield Button("Reject (n)", id="reject", variant="error")
                yield Button("Later (esc)", id="later")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss({"approve": True, "reject": False}.get(event.button.id or ""))

    def action_decide(self, approve: bool | None) -> None:
        self.dismiss(approve)
