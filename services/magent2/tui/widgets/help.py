"""The help screen: every key binding, and what the panels do."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

PANELS = [
    ("Agents panel", "select an agent to talk to it in the current tab"),
    ("Conversations panel", "select one to reopen it (its history, then the live stream)"),
    ("Approval prompt", "y approves, n rejects, esc decides later"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]

    def __init__(self, bindings: list[tuple[str, str]]) -> None:
        super().__init__()
        self.bindings = bindings

    def compose(self) -> ComposeResult:
        keys = Table(title="magent2 tui — keys", show_header=False, box=None, padding=(0, 2))
        for key, what in [*self.bindings, ("", ""), *PANELS]:
            keys.add_row(key, what)
        with Vertical(id="help"):
            yield Static(keys)
            yield Static("esc, F1 or q closes this", classes="dim")
