"""The gateway's stream fan-out: many SSE streams share a few Redis connections, and a client
too slow for its buffer falls back to its own cursor without losing or repeating an event."""

from __future__ import annotations

import asyncio
import json

import httpx

from magent2.bus import Bus, Keys, RedisStreamsBus
from magent2.gateway import create_app
from magent2.gateway.hub import StreamHub
from magent2.settings import GatewaySettings
from tests.support import eventually, serve_app


async def test_hundreds_of_streams_need_only_a_few_connections(redis_url: str) -> None:
    """More SSE clients than the pool has connections: every stream still gets its events, and
    /send keeps working (one blocking read per stream would exhaust the pool)."""
    bus = RedisStreamsBus(redis_url, max_connections=8)
    app = create_app(
        GatewaySettings(
            GATEWAY_HEARTBEAT_SECONDS=1, GATEWAY_STREAM_READERS=2, GATEWAY_CHECK_RECIPIENTS=False
        ),
        bus=bus,
    )
    streams = 300
    try:
        async with (
            serve_app(app) as url,
            httpx.AsyncClient(base_url=url, timeout=20, limits=httpx.Limits(max_connections=None)) as http,
        ):

            async def one(i: int) -> list[str]:
                async with http.stream("GET", f"/stream/c{i}", params={"max_events": 1}) as response:
                    return [line async for line in response.aiter_lines() if line.startswith("data: ")]

            readers = [asyncio.create_task(one(i)) for i in range(streams)]
            await eventually(lambda: app.state.gateway.hub.followed == streams, what="all streams followed")
            for i in range(streams):
                body = {
                    "conversation_id": f"c{i}",
                    "sender": "user:a",
                    "recipient": "agent:A",
                    "content": f"m{i}",
                }
                assert (await http.post("/send", json=body)).status_code == 202
            results = await asyncio.wait_for(asyncio.gather(*readers), 60)
        for i, lines in enumerate(results):
            assert json.loads(lines[0].removeprefix("data: "))["content"] == f"m{i}"
    finally:
        await bus.close()


async def test_a_slow_follower_overflows_then_reads_from_its_cursor(bus: Bus) -> None:
    hub = StreamHub(bus, Keys(), readers=1, block_ms=200, buffer=10)
    try:
        stream = "stream:slow"
        follower = hub.follow(stream, "0-0")
        await bus.publish_many(stream, [str(i) for i in range(25)])  # more than the buffer holds
        await eventually(lambda: follower.arrived.is_set(), what="push")
        await asyncio.sleep(0.3)
        pushed, overflowed = follower.take()
        assert overflowed and pushed == []
        await bus.publish(stream, "after")
        await eventually(lambda: follower.arrived.is_set(), what="next push")
        pushed, overflowed = follower.take()
        assert not overflowed and [m.payload for m in pushed] == ["after"]
        hub.unfollow(follower)
        assert hub.followed == 0
    finally:
        await hub.close()


async def test_sse_through_a_tiny_buffer_loses_and_repeats_nothing(bus: Bus) -> None:
    app = create_app(GatewaySettings(GATEWAY_HEARTBEAT_SECONDS=0.2, GATEWAY_STREAM_BUFFER_EVENTS=10), bus=bus)
    total = 3000
    async with (
        serve_app(app) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as http,
        http.stream("GET", "/stream/burst", params={"max_events": total}) as response,
    ):
        await eventually(lambda: app.state.gateway.hub.followed == 1, what="followed")
        for start in range(0, total, 300):
            await bus.publish_many("stream:burst", [json.dumps({"n": n}) for n in range(start, start + 300)])
        seen = [
            json.loads(line[6:])["n"] async for line in response.aiter_lines() if line.startswith("data: ")
        ]
    assert seen == list(range(total))


async def test_a_stream_joins_the_active_read_with_its_first_event_and_leaves_it_when_quiet(bus: Bus) -> None:
    hub = StreamHub(bus, Keys(), readers=4, block_ms=200, idle_after_s=0.5)
    try:
        quiet, busy = hub.follow("stream:quiet", "0-0"), hub.follow("stream:busy", "0-0")
        assert not hub.active.topics  # opened streams wait in the idle shards
        await bus.publish("stream:busy", "one")
        await eventually(lambda: "stream:busy" in hub.active.topics, what="busy stream active")
        await bus.publish("stream:busy", "two")  # read by the active reader now
        await eventually(lambda: len(busy.buffer) == 2, what="both events pushed")
        assert [m.payload for m in busy.take()[0]] == ["one", "two"]
        await eventually(lambda: not hub.active.topics, timeout=5, what="busy stream idle again")
        await bus.publish("stream:busy", "three")  # back in its shard, still read
        await eventually(lambda: busy.arrived.is_set(), what="pushed from the idle shard")
        assert [m.payload for m in busy.take()[0]] == ["three"]
        assert not quiet.arrived.is_set() and hub.followed == 2
    finally:
        await hub.close()


async def test_a_client_that_goes_away_stops_its_stream_and_is_unfollowed(bus: Bus) -> None:
    app = create_app(GatewaySettings(GATEWAY_HEARTBEAT_SECONDS=30), bus=bus)
    gateway = app.state.gateway
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        async with http.stream("GET", "/stream/gone") as response:
            await eventually(lambda: gateway.hub.followed == 1, what="followed")
            assert response.status_code == 200
        # no event and no heartbeat comes: only the disconnect itself can end the stream
        await eventually(lambda: gateway.hub.followed == 0, what="unfollowed after the disconnect")
        assert gateway.metrics.open_streams._value.get() == 0
