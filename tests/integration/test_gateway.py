"""The gateway over real HTTP (uvicorn on a free port) with a worker behind it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from magent2.bus import Bus, Keys, RedisStreamsBus
from magent2.gateway import create_app
from magent2.settings import GatewaySettings
from magent2.worker import GROUP, EchoRunner, Worker
from tests.support import RedisServer, conversation_events, own_redis, serve_app, workers_running


def settings(**values: Any) -> GatewaySettings:
    return GatewaySettings(**values)


def message(content: str = "hello", conversation: str = "c1", **extra: Any) -> dict[str, Any]:
    return {
        "conversation_id": conversation,
        "sender": "user:alice",
        "recipient": "agent:DevAgent",
        "type": "message",
        "content": content,
        **extra,
    }


def parse_frames(text: str) -> list[dict[str, Any]]:
    frames = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or not line:
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            frames.append(fields)
    return frames


@pytest.fixture
async def gateway(bus: Bus) -> AsyncIterator[tuple[str, Bus]]:
    app = create_app(settings(GATEWAY_HEARTBEAT_SECONDS=0.2, GATEWAY_MAX_CONTENT_BYTES=1000), bus=bus)
    worker = Worker(bus, EchoRunner(), agent_name="DevAgent")
    async with serve_app(app) as url, workers_running(worker):
        yield url, bus


async def test_send_then_stream_the_reply(gateway: tuple[str, Bus]) -> None:
    url, _ = gateway
    async with httpx.AsyncClient(base_url=url) as http:
        sent = await http.post("/send", json=message("hi there"))
        assert sent.status_code == 202, sent.text
        body = sent.json()
        assert body["inbox"] == "chat:DevAgent" and body["stream_url"] == "/stream/c1"
        # the echo's three deltas come within one write window: one token event
        reply = await http.get("/stream/c1", params={"max_events": 4}, timeout=10)
    assert reply.headers["content-type"].startswith("text/event-stream")
    frames = parse_frames(reply.text)
    assert [f["event"] for f in frames] == ["user_message", "run_started", "token", "output"]
    assert frames[2]["data"]["text"] == "echo: hi there" and frames[2]["data"]["index"] == 0
    assert frames[0]["id"] == body["cursor"]
    assert frames[0]["data"]["message_id"] == body["id"] == frames[-1]["data"]["message_id"]
    assert frames[-1]["data"]["text"] == "echo: hi there"
    assert all(f["data"]["event"] == f["event"] for f in frames)


async def test_resume_after_a_dropped_connection_loses_and_repeats_nothing(gateway: tuple[str, Bus]) -> None:
    url, _ = gateway
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for i in range(3):
            await http.post("/send", json=message(f"message number {i}"))
        # user_message, run_started, token (the echo's deltas come in one window), output
        everything = parse_frames((await http.get("/stream/c1", params={"max_events": 12})).text)
        assert len(everything) == 12
        seen: list[dict[str, Any]] = []
        cursor = None
        while len(seen) < 12:  # drop the connection after 3 events, resume with Last-Event-ID
            want = min(3, 12 - len(seen))
            headers = {"Last-Event-ID": cursor} if cursor else {}
            async with http.stream("GET", "/stream/c1", headers=headers) as response:
                text = ""
                async for chunk in response.aiter_text():
                    text += chunk
                    if len(parse_frames(text)) >= want:
                        break
            batch = parse_frames(text)[:want]
            seen.extend(batch)
            cursor = batch[-1]["id"]
    assert [f["id"] for f in seen] == [f["id"] for f in everything]


async def test_last_id_query_and_latest(gateway: tuple[str, Bus]) -> None:
    url, _ = gateway
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        first = (await http.post("/send", json=message("one"))).json()
        after = parse_frames(
            (await http.get("/stream/c1", params={"last_id": first["cursor"], "max_events": 3})).text
        )
        assert after[0]["event"] == "run_started"
        task = asyncio.create_task(http.get("/stream/c1", params={"last_id": "$", "max_events": 1}))
        await asyncio.sleep(0.3)
        await http.post("/send", json=message("two"))
        only_new = parse_frames((await task).text)
    assert only_new[0]["event"] == "user_message" and only_new[0]["data"]["content"] == "two"


async def test_heartbeats_keep_an_idle_stream_alive(gateway: tuple[str, Bus]) -> None:
    url, _ = gateway
    async with (
        httpx.AsyncClient(base_url=url, timeout=10) as http,
        http.stream("GET", "/stream/quiet") as response,
    ):
        text = ""
        async for chunk in response.aiter_text():
            text += chunk
            if text.count(": ping") >= 2:
                break
    assert text.count(": ping") >= 2


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (json.dumps({"content": "x"}).encode(), 422, "conversation_id"),
        (json.dumps(message(recipient="DevAgent")).encode(), 422, "recipient"),
        (json.dumps(message(recipient="agent:")).encode(), 422, "recipient"),
        (json.dumps(message(sender="alice")).encode(), 422, "sender"),
        (json.dumps(message(content="")).encode(), 422, "content"),
        (json.dumps(message(content="x" * 1001)).encode(), 413, "limit is 1000"),
        (json.dumps(message(content="x" * 80_000)).encode(), 413, "request body exceeds"),  # not read whole
        (json.dumps(message(type="shout")).encode(), 422, "type"),
        (json.dumps(message(conversation="has space")).encode(), 422, "conversation_id"),
        (json.dumps(message(extra_field=1)).encode(), 422, "extra_field"),
        (
            b'{"conversation_id": "c1", "sender": "user:a", "recipient": "agent:DevAgent", "content": "x\\ud800"}',
            422,
            "unicode",
        ),
        (json.dumps(message(metadata={"k": ["\udfff"]})).encode(), 422, "metadata"),
        (json.dumps(message(id="\ud83d")).encode(), 422, "id"),
    ],
)
async def test_bad_input_gets_a_clear_4xx_and_publishes_nothing(
    gateway: tuple[str, Bus], body: bytes, status: int, needle: str
) -> None:
    url, bus = gateway
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/send", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert needle in response.text
    assert await bus.streams("") == ["chat:DevAgent"]  # the worker's own (empty) inbox, nothing else
    assert await bus.read("chat:DevAgent") == []


async def test_bad_stream_parameters(gateway: tuple[str, Bus]) -> None:
    url, _ = gateway
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/stream/c1", params={"last_id": "yesterday"})).status_code == 400
        # only ASCII digits, each part within an unsigned 64-bit integer (what Redis accepts)
        for cursor in ("١٢٣-0", "12-", "-1", "1-2-3", str(2**64), f"1-{2**64}", "1 ", "0x10"):
            response = await http.get("/stream/c1", params={"last_id": cursor})
            assert response.status_code == 400, cursor
            assert "invalid cursor" in response.text
        response = await http.get("/stream/c1", headers={"Last-Event-ID": "²".encode()})
        assert response.status_code == 400
        async with http.stream("GET", "/stream/c1", params={"last_id": f"{2**64 - 1}-{2**64 - 1}"}) as ok:
            assert ok.status_code == 200
        assert (await http.get("/stream/c1", params={"max_events": 0})).status_code == 422
        assert (await http.get("/stream/bad id")).status_code == 422


async def test_operational_endpoints(gateway: tuple[str, Bus]) -> None:
    url, _ = gateway
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        await http.post("/send", json=message())  # user_message, run_started, token, output
        await http.get("/stream/c1", params={"max_events": 4})
        assert (await http.get("/health")).json() == {"status": "ok"}
        assert (await http.get("/ready")).json() == {"status": "ready"}
        [agent] = (await http.get("/agents")).json()["agents"]
        assert (agent["name"], agent["inbox"], agent["workers_alive"]) == ("DevAgent", "chat:DevAgent", 1)
        metrics = (await http.get("/metrics")).text
        assert (await http.get("/docs")).status_code == 200
        assert "/send" in (await http.get("/openapi.json")).json()["paths"]
    assert 'magent2_gateway_requests_total{method="POST",route="/send",status="202"} 1.0' in metrics
    assert "magent2_gateway_messages_published_total 1.0" in metrics
    assert "magent2_gateway_events_sent_total 4.0" in metrics
    assert "magent2_gateway_open_streams 0.0" in metrics
    assert "magent2_gateway_event_lag_seconds_count" in metrics


async def test_bearer_token_auth(bus: Bus) -> None:
    await bus.ensure_group(Keys().inbox("DevAgent"), GROUP)  # as a worker does when it starts
    app = create_app(settings(GATEWAY_API_TOKENS="s3cret,other"), bus=bus)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.post("/send", json=message())).status_code == 401
        bad = await http.post("/send", json=message(), headers={"Authorization": "Bearer wrong"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/agents")).status_code == 401
        assert (await http.get("/stream/c1")).status_code == 401
        ok = await http.post("/send", json=message(), headers={"Authorization": "Bearer other"})
        assert ok.status_code == 202
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/ready")).status_code == 200


async def test_redis_outage_503_then_streams_resume(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    bus = RedisStreamsBus(server.url)
    await bus.ensure_group(Keys().inbox("DevAgent"), GROUP)
    app = create_app(settings(GATEWAY_HEARTBEAT_SECONDS=0.2), bus=bus)
    try:
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
            before = await http.post("/send", json=message("before"))
            assert before.status_code == 202
            async with http.stream("GET", "/stream/c1", params={"max_events": 2}) as stream:
                chunks = stream.aiter_text()
                text = await anext(chunks)
                while "user_message" not in text:
                    text += await anext(chunks)
                server.stop()
                down = await http.post("/send", json=message("during"))
                assert down.status_code == 503 and down.headers["retry-after"] == "1"
                refused = down.json()
                assert refused["outcome"] == "not_accepted" and refused["id"] in refused["retry"]
                assert (await http.get("/ready")).status_code == 503
                metrics = (await http.get("/metrics")).text
                assert "magent2_gateway_publish_errors_total 1.0" in metrics
                while "bus unavailable" not in text:
                    text += await anext(chunks)
                server = RedisServer.restart(server)
                after = await http.post("/send", json=message("after"))
                assert after.status_code == 202
                async for chunk in chunks:
                    text += chunk
            frames = parse_frames(text)
            assert [f["data"]["content"] for f in frames] == ["before", "after"]
            assert (await http.get("/ready")).status_code == 200
    finally:
        await bus.close()
        server.stop()


async def test_events_of_a_send_land_in_the_conversation_stream(gateway: tuple[str, Bus]) -> None:
    url, bus = gateway
    async with httpx.AsyncClient(base_url=url) as http:
        await http.post("/send", json=message("x", metadata={"trace": "t-1"}))
    events = await conversation_events(bus, "c1")
    assert events[0].event == "user_message" and events[0].sender == "user:alice"


async def test_sending_the_same_id_again_is_accepted_once(gateway: tuple[str, Bus]) -> None:
    url, bus = gateway
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        first = await http.post("/send", json=message("only once", id="retry-me"))
        second = await http.post("/send", json=message("only once", id="retry-me"))
        assert first.status_code == second.status_code == 202
        assert first.json() == second.json()
        await http.get("/stream/c1", params={"max_events": 4})
    events = await conversation_events(bus, "c1")
    assert [e.event for e in events].count("user_message") == 1
    assert [e.text for e in events if e.event == "output"] == ["echo: only once"]


async def test_durable_ack_waits_for_the_aof_fsync(tmp_path: Path) -> None:
    """GATEWAY_DURABLE_ACK needs WAITAOF (Redis >= 7.2; Valkey here) and an AOF."""
    async with own_redis(tmp_path, binary="valkey-server", appendonly=True) as bus:
        assert await bus.durability_problem() is None
        await bus.ensure_group(Keys().inbox("DevAgent"), GROUP)
        app = create_app(settings(GATEWAY_DURABLE_ACK=True), bus=bus)
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            response = await http.post("/send", json=message("kept"))
            assert response.status_code == 202
        assert "aof_enabled:1" in (await bus.wire.call("INFO", "persistence")).split()


async def test_durable_ack_is_refused_where_it_cannot_be_honoured(tmp_path: Path, redis_url: str) -> None:
    plain = RedisStreamsBus(redis_url)  # Debian's Redis 7.0: no WAITAOF
    try:
        problem = await plain.durability_problem()
        assert problem and ("WAITAOF" in problem or "appendonly" in problem)
    finally:
        await plain.close()
    async with own_redis(tmp_path, binary="valkey-server") as no_aof:
        assert "appendonly off" in (await no_aof.durability_problem() or "")


async def test_sending_to_an_agent_without_an_inbox_is_404(gateway: tuple[str, Bus]) -> None:
    url, bus = gateway
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/send", json=message(recipient="agent:Nobody"))
        assert response.status_code == 404
        assert response.json()["detail"] == "unknown agent 'Nobody'; known agents: DevAgent"
        await bus.ensure_group(Keys().inbox("Late"), GROUP)  # a worker of Late starts
        late = await http.post("/send", json=message(recipient="agent:Late"))
        assert late.status_code == 202  # seen on the next look, not after a long cache
    assert await bus.streams("chat:Nobody") == []  # the mistyped inbox was never created
