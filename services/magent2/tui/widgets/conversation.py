"""One conversation as it happens: messages, the agent's reply streamed as markdown, tool steps
as collapsible cards, approvals, cancellations and errors."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Collapsible, Markdown, Static


class ToolCard(Collapsible):
    """A tool call: its arguments while it runs; then its result (or error) and duration."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.name_ = str(event.get("name", "tool"))
        self.args = Static(Text(json.dumps(event.get("args", {}), ensure_ascii=False)), classes="args")
        super().__init__(self.args, title=f"⚙ {self.name_} …", collapsed=True, classes="tool")

    def finish(self, event: dict[str, Any]) -> None:
        took = f"{event.get('duration_ms') or 0:.0f} ms"
        if event.get("status") == "success":
            self.title = f"⚙ {self.name_} ✓ {took}"
            result = Static(Text(str(event.get("result_summary") or "")), classes="result")
        else:
            self.title = f"⚙ {self.name_} ✗ {took}"
            self.add_class("failed")
            result = Static(Text(f"error: {event.get('error')}"), classes="result error")
        self.query_one(Collapsible.Contents).mount(result)


class ConversationView(VerticalScroll):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reply: Markdown | None = None
        self.reply_text = ""
        self.tools: dict[str, ToolCard] = {}

    async def show(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "user_message":
            heading = Text.assemble((event["sender"], "bold"), " → ", (event["recipient"], "dim"))
            await self.mount(Static(Text.assemble(heading, "\n", event["content"]), classes="user"))
        elif kind == "run_started":
            await self._start_reply(str(event.get("agent", "agent")))
        elif kind == "token":
            if self.reply is None:
                await self._start_reply("agent")
            self.reply_text += event["text"]
            assert self.reply is not None
            await self.reply.append(event["text"])
        elif kind == "tool_step":
            await self._tool_step(event)
        elif kind == "output":
            if self.reply is None:
                await self._start_reply("agent")
            assert self.reply is not None
            if self.reply_text != event["text"]:  # nothing streamed, or a re-run streamed twice
                await self.reply.update(event["text"])
            self.reply, self.reply_text = None, ""
        elif kind == "error":
            await self.mount(Static(Text(f"error: {event['message']}"), classes="error"))
            self.reply = None
        elif kind == "cancelled":
            await self.mount(
                Static(Text(f"■ stopped: {event.get('reason') or 'cancelled'}"), classes="notice")
            )
            self.reply, self.reply_text = None, ""
        elif kind == "approval_required":
            if self.reply is not None and not self.reply_text:  # paused before it said anything
                await self.reply.remove()
                await self.query(".speaker").last().remove()
                self.reply = None
            call = f"{event['tool']}({json.dumps(event.get('arguments', {}), ensure_ascii=False)})"
            await self.mount(Static(Text(f"⏸ {call} waits for approval"), classes="notice"))
        elif kind == "approval_resolved":
            text = f"{'✓' if event['decision'] == 'approve' else '✗'} {event['decision']}d by {event['by']}"
            await self.mount(Static(Text(text), classes="notice"))
        self.scroll_end(animate=False)

    async def _start_reply(self, agent: str) -> None:
        self.reply, self.reply_text = Markdown(classes="agent"), ""
        await self.mount(Static(Text(agent, style="bold"), classes="speaker"), self.reply)

    async def _tool_step(self, event: dict[str, Any]) -> None:
        call_id = str(event.get("tool_call_id") or event.get("name"))
        if event.get("status") == "start" or call_id not in self.tools:
            card = self.tools[call_id] = ToolCard(event)
            await self.mount(card)
        if event.get("status") in ("success", "error"):
            self.tools[call_id].finish(event)
