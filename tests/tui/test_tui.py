"""The TUI driven by Textual's pilot against a real local gateway (`magent2 up`, scripted model):
streamed markdown replies, tool steps, approvals, stop, tabs, panels, reopening, reconnecting."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Markdown, Static

from magent2.client.http import Client
from magent2.tui.app import MagentApp
from magent2.tui.widgets.agents import AgentItem
from magent2.tui.widgets.approval import ApprovalScreen
from magent2.tui.widgets.conversation import ToolCard
from magent2.tui.widgets.conversations import ConversationItem
from magent2.tui.widgets.session import Session
from tests.support import free_port, restartable_gateway

SIZE = (140, 40)


def app(url: str, conversation: str, agent: str = "DevAgent") -> MagentApp:
    return MagentApp(Client(url, agent, "user:tester"), conversation_id=conversation, refresh_s=0.3)


async def until(pilot: Pilot[Any], condition: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)
    return found


async def say(pilot: Pilot[Any], text: str) -> None:
    session = pilot.app.session
    assert session is not None
    session.entry.focus()
    session.entry.value = text
    await pilot.press("enter")


def replies(app: MagentApp) -> list[str]:
    session = app.session
    return [str(m.source) for m in session.view.query(Markdown)] if session else []


def notices(app: MagentApp) -> list[str]:
    session = app.session
    return [str(s.render()) for s in session.view.query(".notice").results(Static)] if session else []


async def test_a_message_streams_its_reply_as_markdown(gateway_url: str) -> None:
    async with app(gateway_url, "tui-md").run_test(size=SIZE) as pilot:
        await say(pilot, "**bold** move")
        await until(pilot, lambda: "you said: **bold** move" in replies(pilot.app), "the streamed reply")
        session = pilot.app.session
        assert session is not None and session.cursor != "0-0"
        assert "user:tester" in str(session.view.query(".user").first(Static).render())


async def test_panels_show_live_agents_conversations_and_the_graph(gateway_url: str) -> None:
    async with app(gateway_url, "tui-panels").run_test(size=SIZE) as pilot:
        await say(pilot, "hello")
        await until(pilot, lambda: replies(pilot.app), "the reply")
        agents = await until(pilot, lambda: list(pilot.app.query(AgentItem)), "the agents panel")
        assert {item.agent_name for item in agents} == {"DevAgent", "Operator"}
        listed = await until(
            pilot,
            lambda: [i for i in pilot.app.query(ConversationItem) if i.conversation_id == "tui-panels"],
            "the conversation in the list",
        )
        assert "DevAgent" in str(listed[0].query_one("Label").render())
        graph = await until(
            pilot, lambda: "agent:DevAgent" in str(pilot.app.query_one("#graph").render()), "graph"
        )
        assert graph
        assert "gateway ok" in str(pilot.app.query_one("#health").render())


async def test_an_approval_prompt_approves_the_tool_call_and_the_card_shows_it(gateway_url: str) -> None:
    async with app(gateway_url, "tui-approve", agent="Operator").run_test(size=SIZE) as pilot:
        await say(pilot, 'call terminal {"command": "echo approved"}')
        await until(pilot, lambda: isinstance(pilot.app.screen, ApprovalScreen), "the approval prompt")
        assert pilot.app.screen.request["arguments"] == {"command": "echo approved"}
        await pilot.press("y")
        await until(
            pilot, lambda: any("tool said" in r for r in replies(pilot.app)), "the resumed run's reply"
        )
        [card] = pilot.app.query(ToolCard)
        assert "✓" in str(card.title)
        assert any("approved by user" in n for n in notices(pilot.app))


async def test_a_rejected_call_never_runs(gateway_url: str) -> None:
    async with app(gateway_url, "tui-reject", agent="Operator").run_test(size=SIZE) as pilot:
        await say(pilot, 'call terminal {"command": "echo nope"}')
        await until(pilot, lambda: isinstance(pilot.app.screen, ApprovalScreen), "the approval prompt")
        await pilot.click("#reject")
        await until(
            pilot, lambda: any("rejectd" in n or "rejected" in n for n in notices(pilot.app)), "rejection"
        )
        await until(pilot, lambda: any("tool said" in r for r in replies(pilot.app)), "the reply")
        assert all('"output": "nope' not in r for r in replies(pilot.app))


async def test_stop_cancels_the_streaming_reply(gateway_url: str) -> None:
    async with app(gateway_url, "tui-stop").run_test(size=SIZE) as pilot:
        await say(pilot, "slow 300")
        await until(pilot, lambda: any(r.startswith("w0") for r in replies(pilot.app)), "streaming")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any("stopped" in n for n in notices(pilot.app)), "the cancelled notice")


async def test_tabs_open_switch_close_and_a_conversation_reopens_from_the_list(gateway_url: str) -> None:
    async with app(gateway_url, "tui-tabs").run_test(size=SIZE) as pilot:
        await say(pilot, "remember me")
        await until(pilot, lambda: replies(pilot.app), "the reply")
        await pilot.press("ctrl+n")
        await until(pilot, lambda: len(pilot.app.query(Session)) == 2, "a second tab")
        second = pilot.app.session
        assert second is not None and second.conversation_id != "tui-tabs"
        await pilot.press("ctrl+pageup")
        await until(
            pilot, lambda: pilot.app.session and pilot.app.session.conversation_id == "tui-tabs", "switch"
        )
        await pilot.press("ctrl+w")
        await until(pilot, lambda: len(pilot.app.query(Session)) == 1, "one tab left")
        assert pilot.app.session is second
        item = await until(
            pilot,
            lambda: [i for i in pilot.app.query(ConversationItem) if i.conversation_id == "tui-tabs"],
            "the closed conversation in the list",
        )
        conversations = pilot.app.query_one("#conversations")
        conversations.focus()
        conversations.index = list(conversations.children).index(item[0])
        await pilot.press("enter")
        await until(
            pilot, lambda: pilot.app.session and pilot.app.session.conversation_id == "tui-tabs", "reopen"
        )
        await until(pilot, lambda: "you said: remember me" in replies(pilot.app), "its history")


async def test_selecting_an_agent_talks_to_it(gateway_url: str) -> None:
    async with app(gateway_url, "tui-agent").run_test(size=SIZE) as pilot:
        items = await until(pilot, lambda: list(pilot.app.query(AgentItem)), "the agents panel")
        agents = pilot.app.query_one("#agents")
        agents.focus()
        agents.index = [i.agent_name for i in items].index("Operator")
        await pilot.press("enter")
        assert pilot.app.session is not None and pilot.app.session.agent == "Operator"
        assert "Operator" in str(pilot.app.query_one("#where").render())


def test_the_help_screen_lists_every_key(snap_compare: Any) -> None:
    async def open_help(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: "unreachable" in str(pilot.app.query_one("#health").render()), "health")
        await pilot.press("f1")

    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the snapshot shows the reconnecting state
    tui = MagentApp(Client(closed, "DevAgent", "user:tester"), conversation_id="snapshot", refresh_s=60)
    assert snap_compare(tui, run_before=open_help, terminal_size=SIZE)


@pytest.mark.e2e
async def test_the_stream_resumes_after_a_gateway_restart_without_losing_or_doubling_text(
    redis_url: str,
) -> None:
    words = " ".join(f"w{i}" for i in range(60))
    with restartable_gateway(redis_url) as gateway:
        async with app(gateway.url, "tui-restart").run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "gateway ok" in str(pilot.app.query_one("#health").render()), "health")
            await until(pilot, lambda: list(pilot.app.query(AgentItem)), "the worker")
            await say(pilot, words)
            await until(pilot, lambda: any("w5" in r for r in replies(pilot.app)), "streaming")
            gateway.kill()
            await until(pilot, lambda: "unreachable" in str(pilot.app.query_one("#health").render()), "down")
            gateway.start()
            await until(
                pilot, lambda: "gateway ok" in str(pilot.app.query_one("#health").render()), "up again"
            )
            await until(
                pilot, lambda: replies(pilot.app) == [f"echo: {words}"], "the whole reply", timeout=30
            )
