"""examples/orchestration.yaml in local mode (`magent2 up`, in-memory bus), driven by the scripted
model: Lead fans a request out to Researcher, gathers the answers, and the observer API shows it."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.support import ROOT, local_mode

pytestmark = pytest.mark.e2e


def outputs(http: httpx.Client, conversation: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = [e["event"] for e in http.get(f"/conversations/{conversation}").json().get("events", [])]
        found = [e for e in events if e["event"] == "output"]
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{count} outputs in {conversation}: {events}")


def test_lead_fans_out_to_researchers_and_the_graph_shows_it() -> None:
    with (
        local_mode(ROOT / "examples" / "orchestration.yaml") as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):

        def ask(content: str) -> None:
            body = {"conversation_id": "plan", "sender": "user:dev", "recipient": "agent:Lead"}
            assert http.post("/send", json=body | {"content": content}).status_code == 202

        ask('call fan_out {"agent": "Researcher", "tasks": ["tides", "winds"]}')
        started = json.loads(outputs(http, "plan", 1)[-1]["text"].removeprefix("tool said: "))
        topics = [child["done_topic"] for child in started["children"]]
        ask(f"call fan_in {json.dumps({'done_topics': topics, 'timeout_s': 20})}")
        gathered = json.loads(outputs(http, "plan", 2)[-1]["text"].removeprefix("tool said: "))
        graph = http.get("/graph/plan").json()
        listed = http.get("/conversations").json()["conversations"]
        agents = {a["name"]: a for a in http.get("/agents").json()["agents"]}
    assert [r["output"] for r in gathered["results"]] == ["you said: tides", "you said: winds"]
    assert graph["edges"] == [
        {"from": "agent:Lead", "to": "agent:Researcher", "messages": 2},
        {"from": "user:dev", "to": "agent:Lead", "messages": 2},
    ]
    children = [child["conversation_id"] for child in started["children"]]
    assert {c["id"] for c in listed} == {"plan", *children}
    assert next(c for c in listed if c["id"] == "plan")["children"] == children
    assert agents["Lead"]["workers_alive"] == 1 and agents["Researcher"]["backlog"] == 0
