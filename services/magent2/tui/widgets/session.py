"""A session tab: one conversation, the agent it talks to, and where its stream has read to."""

from __future__ import annotations

from textual.widgets import Input, TabPane

from magent2.tui.widgets.conversation import ConversationView


class Session(TabPane):
    def __init__(self, conversation_id: str, agent: str, *, pane_id: str) -> None:
        self.conversation_id, self.agent = conversation_id, agent
        self.cursor = "0-0"  # the last event shown; the stream resumes after it
        self.view = ConversationView(classes="view")
        self.entry = Input(classes="entry")
        super().__init__(conversation_id, self.view, self.entry, id=pane_id)
        self.talk_to(agent)

    def talk_to(self, agent: str) -> None:
        self.agent = agent
        self.entry.placeholder = f"message {agent} — enter sends, F1 help"
