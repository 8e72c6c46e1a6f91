"""The terminal UI: session tabs, an agents panel and a conversations panel, a graph pane, all over
the gateway's HTTP/SSE API (never Redis). Streams resume from their cursor when the gateway comes
back; approval requests open a prompt."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from typing import Any

import httpx
from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Input, Label, ListView, Static, TabbedContent

from magent2.client.http import Client, ClientFailure, new_conversation_id
from magent2.tui.widgets.agents import AgentItem, AgentList
from magent2.tui.widgets.approval import ApprovalScreen
from magent2.tui.widgets.conversations import ConversationItem, ConversationList
from magent2.tui.widgets.graph import GraphView
from magent2.tui.widgets.help import HelpScreen
from magent2.tui.widgets.session import Session

RECONNECT_S = 1.0


class MagentApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "magent2"
    BINDINGS = [
        Binding("ctrl+t,ctrl+n", "new_session", "New tab"),
        # before the text box's own ctrl+w (delete a word; ctrl+backspace still does)
        Binding("ctrl+w", "close_session", "Close tab", priority=True),
        Binding("ctrl+pagedown", "switch(1)", "Next tab"),
        Binding("ctrl+pageup", "switch(-1)", "Previous tab"),
        Binding("ctrl+s", "cancel_run", "Stop reply"),
        Binding("ctrl+g", "toggle_graph", "Graph"),
        Binding("ctrl+r", "refresh", "Refresh"),
        Binding("f1", "help", "Help"),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(self, client: Client, *, conversation_id: str | None = None, refresh_s: float = 2.0) -> None:
        super().__init__()
        self.client, self.first_conversation, self.refresh_s = client, conversation_id, refresh_s
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
        self.healthy: bool | None = None
        self._panes = 0

    def compose(self) -> ComposeResult:
        with Horizontal(id="topbar"):
            yield Static(Text("gateway …"), id="health")
            yield Static(id="where")
        with Horizontal(id="body"):
            with Vertical(id="sidebar"):
                yield Label("Agents", classes="title")
                yield AgentList(id="agents")
                yield Label("Conversations", classes="title")
                yield ConversationList(id="conversations")
            yield TabbedContent(id="sessions")
            yield GraphView(id="graph")
        yield Footer()

    async def on_mount(self) -> None:
        await self.open_session(self.first_conversation or new_conversation_id(), self.client.agent)
        self.set_interval(self.refresh_s, self.action_refresh)
        self.action_refresh()

    async def on_unmount(self) -> None:
        await self.http.aclose()

    # -- sessions -----------------------------------------------------------------------------------
    @property
    def sessions(self) -> TabbedContent:
        return self.query_one("#sessions", TabbedContent)

    @property
    def session(self) -> Session | None:
        pane = self.sessions.active_pane
        return pane if isinstance(pane, Session) else None

    async def open_session(self, conversation_id: str, agent: str) -> Session:
        for pane in self.sessions.query(Session):
            if pane.conversation_id == conversation_id:
                self.sessions.active = pane.id or ""
                return pane
        self._panes += 1
        session = Session(conversation_id, agent, pane_id=f"session-{self._panes}")
        await self.sessions.add_pane(session)
        self.sessions.active = session.id or ""
        self.run_worker(self._follow(session), group=session.id or "", exclusive=True, exit_on_error=False)
        session.entry.focus()
        self._show_where()
        return session

    async def _follow(self, session: Session) -> None:
        """Show the conversation from its start (a reopened one's history), then follow it for as
        long as the tab is open, resuming from the last cursor whenever the gateway returns."""
        while True:
            try:
                async for cursor, event in self.client.events(
                    self.http, session.conversation_id, session.cursor, resume_for_s=math.inf
                ):
                    session.cursor = cursor
                    await session.view.show(event)
                    if event["event"] == "approval_required":
                        self._ask(session, event)
            except ClientFailure:  # the gateway is not there yet: keep trying
                await asyncio.sleep(RECONNECT_S)

    def _ask(self, session: Session, request: dict[str, Any]) -> None:
        async def decided(approve: bool | None) -> None:
            if approve is not None:
                answer = await self.client.decide(self.http, request, approve)
                self.notify(answer, title=request["tool"])

        self.push_screen(ApprovalScreen(request), decided)

    @on(Input.Submitted, ".entry")
    async def send(self, event: Input.Submitted) -> None:
        session = self.session
        text = event.value.strip()
        if session is None or not text:
            return
        event.input.clear()
        self.run_worker(self._send(session, text), group=f"send-{session.id}")

    async def _send(self, session: Session, text: str) -> None:
        try:
            await dataclasses.replace(self.client, agent=session.agent).send(
                self.http, session.conversation_id, text
            )
        except ClientFailure as failure:
            self.notify(str(failure), severity="error", title="not sent")
            session.entry.value = session.entry.value or text  # keep what was typed

    @on(ListView.Selected, "#agents")
    def talk_to(self, event: ListView.Selected) -> None:
        if isinstance(event.item, AgentItem) and (session := self.session) is not None:
            session.talk_to(event.item.agent_name)
            session.entry.focus()
            self._show_where()

    @on(ListView.Selected, "#conversations")
    async def reopen(self, event: ListView.Selected) -> None:
        if not isinstance(event.item, ConversationItem):
            return
        conversation_id = event.item.conversation_id
        agent = self.client.agent
        try:
            found = await self.client.get(self.http, f"/conversations/{conversation_id}", limit=1)
            agent = found["agents"][0] if found["agents"] else agent
        except ClientFailure:
            pass
        await self.open_session(conversation_id, agent)

    @on(TabbedContent.TabActivated)
    def tab_changed(self) -> None:
        self._show_where()
        self.action_refresh()

    # -- actions ------------------------------------------------------------------------------------
    async def action_new_session(self) -> None:
        await self.open_session(
            new_conversation_id(), self.session.agent if self.session else self.client.agent
        )

    async def action_close_session(self) -> None:
        session = self.session
        if session is None:
            return
        self.workers.cancel_group(self, session.id or "")
        await self.sessions.remove_pane(session.id or "")
        if not self.sessions.query(Session):
            await self.action_new_session()
        elif (current := self.session) is not None:
            current.entry.focus()
        self._show_where()

    def action_switch(self, step: int) -> None:
        panes = list(self.sessions.query(Session))
        if self.session in panes:
            target = panes[(panes.index(self.session) + step) % len(panes)]
            self.sessions.active = target.id or ""
            target.entry.focus()  # focus elsewhere would pull its own tab back to the front

    async def action_cancel_run(self) -> None:
        if (session := self.session) is not None:
            answer = await dataclasses.replace(self.client, agent=session.agent).cancel(
                self.http, session.conversation_id
            )
            self.notify(answer)

    def action_toggle_graph(self) -> None:
        self.query_one(GraphView).toggle_class("hidden")

    def action_help(self) -> None:
        keys = [
            (b.key.replace("ctrl+", "Ctrl-").replace("f1", "F1").replace(",", ", "), b.description)
            for b in self.BINDINGS
            if isinstance(b, Binding)
        ]
        self.push_screen(HelpScreen(keys))

    def action_refresh(self) -> None:
        # One refresh at a time, and never cancelled halfway: one cut off while its lists were being
        # re-mounted left widgets with messages that never drained (seen under load).
        if not any(w.group == "refresh" and not w.is_finished for w in self.workers):
            self._refresh()

    # a refresh that fails (the app closing under it) must not take the app down
    @work(group="refresh", exit_on_error=False)
    async def _refresh(self) -> None:
        healthy = await self.client.healthy(self.http)
        self._show_health(healthy)
        if not healthy:
            return
        try:
            agents = (await self.client.get(self.http, "/agents"))["agents"]
            conversations = (await self.client.get(self.http, "/conversations", limit=50))["conversations"]
            graph = None
            if (session := self.session) is not None:
                try:
                    graph = await self.client.get(self.http, f"/graph/{session.conversation_id}")
                except ClientFailure as failure:
                    if "HTTP 404" not in str(failure):
                        raise
                self.query_one(GraphView).show(session.conversation_id, graph)
        except ClientFailure:
            self._show_health(False)
            return
        await self.query_one(AgentList).show(agents)
        await self.query_one(ConversationList).show(conversations)

    def _show_health(self, healthy: bool) -> None:
        self.healthy = healthy
        label = ("● gateway ok", "green") if healthy else ("● gateway unreachable, reconnecting", "red")
        self.query_one("#health", Static).update(Text(label[0], style=label[1]))

    def _show_where(self) -> None:
        if (session := self.session) is not None:
            where = Text.assemble("talking to ", (session.agent, "bold"), " in ", session.conversation_id)
            self.query_one("#where", Static).update(where)


def main(base_url: str, agent: str, sender: str, token: str | None, conversation_id: str | None) -> int:
    MagentApp(Client(base_url.rstrip("/"), agent, sender, token), conversation_id=conversation_id).run()
    return 0
