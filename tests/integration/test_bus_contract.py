"""One contract, two buses: every test here runs on InMemoryBus and on RedisStreamsBus."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from magent2.bus import LATEST, START, Bus, ConversationBusy, Publication
from magent2.bus.api import Parking, Ranking, Tally, parse_id

S = "stream:test"
G = "workers"


async def test_publish_then_read_in_order(bus: Bus) -> None:
    ids = [await bus.publish(S, f"m{i}") for i in range(3)]
    assert ids == sorted(ids, key=parse_id)
    got = await bus.read(S, START)
    assert [m.payload for m in got] == ["m0", "m1", "m2"]
    assert [m.id for m in await bus.read(S, ids[0])] == ids[1:]
    assert await bus.last_id(S) == ids[-1]
    assert await bus.last_id("stream:none") == START


async def test_publish_many_keeps_order_and_count(bus: Bus) -> None:
    ids = await bus.publish_many(S, [str(i) for i in range(1000)], ttl_s=60)
    assert len(set(ids)) == 1000
    got = await bus.read(S, START, count=2000)
    assert [m.payload for m in got] == [str(i) for i in range(1000)]


async def test_publish_batch_appends_to_each_stream_in_order(bus: Bus) -> None:
    await bus.publish_batch(
        [Publication(S, ["a1", "a2"], ttl_s=60), Publication("stream:other", ["b1"]), Publication(S, ["a3"])]
    )
    assert [m.payload for m in await bus.read(S)] == ["a1", "a2", "a3"]
    assert [m.payload for m in await bus.read("stream:other")] == ["b1"]


async def test_only_if_idle_refuses_while_an_earlier_message_is_unfinished(bus: Bus) -> None:
    inbox, announce = "chat:idle", Publication("stream:idle", ["hello"])
    await bus.ensure_group(inbox, "g")
    _, first = await bus.publish_after(announce, inbox, "m1", order_key="c1", token="t1", only_if_idle=True)
    assert await bus.unfinished(inbox, "c1") == 1
    with pytest.raises(ConversationBusy):
        await bus.publish_after(announce, inbox, "m2", order_key="c1", token="t2", only_if_idle=True)
    # a retry of the accepted one is not refused; another conversation is not busy
    assert (await bus.publish_after(announce, inbox, "m1", order_key="c1", token="t1", only_if_idle=True))[
        1
    ] == first
    await bus.publish_after(announce, inbox, "m3", order_key="c2", token="t3", only_if_idle=True)
    [message, _] = await bus.consume(inbox, "g", "me", count=10, block_ms=100)
    assert (
        await bus.admit(inbox, "g", "me", message.id, order_key="c1", token="t1", max_deliveries=5) == "run"
    )
    await bus.complete(inbox, "g", "me", message.id, order_key="c1", done_token="t1")
    assert await bus.unfinished(inbox, "c1") == 0
    await bus.publish_after(announce, inbox, "m2", order_key="c1", token="t2", only_if_idle=True)


async def test_values_are_kept_and_expire(bus: Bus) -> None:
    assert await bus.get_value("agent:x") is None
    await bus.put_value("agent:x", '{"on_new_message": "reject"}')
    assert await bus.get_value("agent:x") == '{"on_new_message": "reject"}'
    await bus.put_value("agent:short", "v", ttl_s=1)
    await asyncio.sleep(1.2)
    assert await bus.get_value("agent:short") is None


async def test_read_count_limits_batch(bus: Bus) -> None:
    await bus.publish_many(S, ["a", "b", "c"])
    assert [m.payload for m in await bus.read(S, START, count=2)] == ["a", "b"]


async def test_blocking_read_wakes_on_publish(bus: Bus) -> None:
    async def later() -> None:
        await asyncio.sleep(0.05)
        await bus.publish(S, "late")

    task = asyncio.create_task(later())
    began = time.monotonic()
    got = await bus.read(S, START, block_ms=5000)
    assert [m.payload for m in got] == ["late"]
    assert time.monotonic() - began < 2
    await task


async def test_blocking_read_times_out_empty(bus: Bus) -> None:
    assert await bus.read(S, START, block_ms=50) == []


async def test_latest_cursor_sees_only_new_entries(bus: Bus) -> None:
    await bus.publish(S, "old")

    async def later() -> None:
        await asyncio.sleep(0.05)
        await bus.publish(S, "new")

    task = asyncio.create_task(later())
    got = await bus.read(S, LATEST, block_ms=5000)
    assert [m.payload for m in got] == ["new"]
    await task


async def test_streams_lists_by_prefix(bus: Bus) -> None:
    await bus.publish("p:chat:B", "x")
    await bus.publish("p:chat:A", "x")
    await bus.publish("p:stream:c", "x")
    assert await bus.streams("p:chat:") == ["p:chat:A", "p:chat:B"]


async def test_group_delivers_each_entry_once(bus: Bus) -> None:
    await bus.ensure_group(S, G)
    await bus.ensure_group(S, G)  # idempotent
    await bus.publish_many(S, ["1", "2", "3", "4"])
    a = await bus.consume(S, G, "a", count=2, block_ms=100)
    b = await bus.consume(S, G, "b", count=10, block_ms=100)
    assert [m.payload for m in a] == ["1", "2"]
    assert [m.payload for m in b] == ["3", "4"]
    assert await bus.consume(S, G, "a", count=10, block_ms=50) == []


async def test_group_starts_at_beginning_of_existing_stream(bus: Bus) -> None:
    await bus.publish(S, "before")
    await bus.ensure_group(S, G)
    assert [m.payload for m in await bus.consume(S, G, "a", count=5, block_ms=50)] == ["before"]


async def test_blocking_consume_wakes_on_publish(bus: Bus) -> None:
    await bus.ensure_group(S, G)

    async def later() -> None:
        await asyncio.sleep(0.05)
        await bus.publish(S, "x")

    task = asyncio.create_task(later())
    got = await bus.consume(S, G, "a", count=5, block_ms=5000)
    assert [m.payload for m in got] == ["x"]
    await task


async def test_reclaim_takes_only_idle_entries(bus: Bus) -> None:
    await bus.ensure_group(S, G)
    await bus.publish_many(S, ["1", "2"])
    await bus.consume(S, G, "dead", count=2, block_ms=50)
    assert await bus.reclaim(S, G, "alive", min_idle_ms=10_000, count=10) == []
    await asyncio.sleep(0.08)
    claimed = await bus.reclaim(S, G, "alive", min_idle_ms=50, count=10)
    assert [m.payload for m in claimed] == ["1", "2"]
    # now owned by "alive" with a fresh idle time
    assert await bus.reclaim(S, G, "other", min_idle_ms=50, count=10) == []


async def test_touch_renews_the_lease(bus: Bus) -> None:
    await bus.ensure_group(S, G)
    await bus.publish(S, "1")
    [message] = await bus.consume(S, G, "a", count=1, block_ms=50)
    await asyncio.sleep(0.08)
    assert await bus.touch(S, G, "a", [message.id]) == []
    assert await bus.reclaim(S, G, "b", min_idle_ms=60, count=10) == []


async def test_touch_never_takes_an_entry_back_from_its_new_holder(bus: Bus) -> None:
    await bus.ensure_group(S, G)
    await bus.publish_many(S, ["1", "2"])
    first, second = await bus.consume(S, G, "frozen", count=2, block_ms=50)
    await asyncio.sleep(0.06)
    [taken] = await bus.reclaim(S, G, "rescuer", min_idle_ms=50, count=1)
    assert taken.id == first.id
    # the frozen consumer wakes and renews: it learns it lost `first`, keeps `second`
    assert await bus.touch(S, G, "frozen", [first.id, second.id]) == [first.id]
    assert await bus.admit(S, G, "frozen", first.id, order_key="c", token="t1", max_deliveries=5) == "lost"
    assert await bus.admit(S, G, "rescuer", first.id, order_key="c", token="t1", max_deliveries=5) == "run"
    await bus.release(S, G, "frozen", [first.id], idle_ms=60_000)  # not its own: ignored
    assert await bus.reclaim(S, G, "third", min_idle_ms=30_000, count=10) == []


async def test_release_makes_entries_reclaimable_now(bus: Bus) -> None:
    await bus.ensure_group(S, G)
    await bus.publish(S, "1")
    [message] = await bus.consume(S, G, "a", count=1, block_ms=50)
    await bus.release(S, G, "a", [message.id], idle_ms=60_000)
    assert [m.id for m in await bus.reclaim(S, G, "b", min_idle_ms=30_000, count=10)] == [message.id]


async def _consume_one(
    bus: Bus, payload: str = "1", consumer: str = "a", order_key: str | None = None
) -> str:
    await bus.ensure_group(S, G)
    published = await bus.publish(S, payload, order_key=order_key)
    [message] = await bus.consume(S, G, consumer, count=1, block_ms=50)
    assert message.id == published
    return message.id


async def _admit(
    bus: Bus, message_id: str, token: str, *, order_key: str = "conv", consumer: str = "a"
) -> str:
    return await bus.admit(S, G, consumer, message_id, order_key=order_key, token=token, max_deliveries=5)


async def test_complete_acks_and_remembers(bus: Bus) -> None:
    message_id = await _consume_one(bus)
    assert await _admit(bus, message_id, "env-1") == "run"
    events = Publication("stream:events", ["last", "events"], ttl_s=60)
    assert await bus.complete(S, G, "a", message_id, done_token="env-1", publish=[events]) == "ok"
    assert [m.payload for m in await bus.read("stream:events")] == ["last", "events"]
    await asyncio.sleep(0.05)
    assert await bus.reclaim(S, G, "b", min_idle_ms=0, count=10) == []
    # the same envelope again (a resent message): admitted as done, completing publishes nothing
    again = await _consume_one(bus)
    assert await _admit(bus, again, "env-1") == "done"
    assert await bus.complete(S, G, "a", again, done_token="env-1", publish=[events]) == "duplicate"
    assert len(await bus.read("stream:events")) == 2


async def test_completion_is_fenced_against_stale_holders_and_retries(bus: Bus) -> None:
    message_id = await _consume_one(bus)
    await asyncio.sleep(0.06)
    [taken] = await bus.reclaim(S, G, "b", min_idle_ms=50, count=1)
    events = Publication("stream:events", ["from a"])
    # "a" froze past its lease: its completion publishes nothing and acks nothing
    assert await bus.complete(S, G, "a", message_id, done_token="env", publish=[events]) == "lost"
    assert await bus.read("stream:events") == []
    assert (
        await bus.complete(
            S, G, "b", taken.id, done_token="env", publish=[Publication("stream:events", ["from b"])]
        )
        == "ok"
    )
    # a retried completion (its first reply was lost) finds it done: nothing again
    assert await bus.complete(S, G, "b", taken.id, done_token="env", publish=[events]) == "duplicate"
    assert await bus.complete(S, G, "a", taken.id, done_token="env", publish=[events]) == "duplicate"
    assert [m.payload for m in await bus.read("stream:events")] == ["from b"]


async def test_completion_publishes_to_several_streams_at_once(bus: Bus) -> None:
    message_id = await _consume_one(bus)
    pubs = [
        Publication("stream:one", ["1a", "1b"], ttl_s=60),
        Publication("stream:two", ["2a"]),
        Publication("stream:three", []),
    ]
    assert await bus.complete(S, G, "a", message_id, publish=pubs) == "ok"
    assert [m.payload for m in await bus.read("stream:one")] == ["1a", "1b"]
    assert [m.payload for m in await bus.read("stream:two")] == ["2a"]


async def test_deliveries_are_counted_and_too_many_make_an_entry_dead(bus: Bus) -> None:
    message_id = await _consume_one(bus, consumer="c0")
    for n in range(1, 4):
        await asyncio.sleep(0.03)
        [again] = await bus.reclaim(S, G, f"c{n}", min_idle_ms=20, count=1)
        assert again.id == message_id
    # delivered 4 times now; renewals and hand-backs do not count
    assert await bus.touch(S, G, "c3", [message_id]) == []
    assert await bus.admit(S, G, "c3", message_id, order_key="conv", token="t", max_deliveries=4) == "run"
    assert await bus.admit(S, G, "c3", message_id, order_key="conv", token="t", max_deliveries=3) == "dead"


async def test_order_key_gives_turns_in_arrival_order(bus: Bus) -> None:
    await bus.ensure_group(S, G)
    first = await bus.publish(S, "1", order_key="conv")
    second = await bus.publish(S, "2", order_key="conv")
    other = await bus.publish(S, "3", order_key="other")
    assert len(await bus.consume(S, G, "a", count=3, block_ms=50)) == 3
    assert await _admit(bus, first, "t1") == "run"
    assert await _admit(bus, second, "t2") == "wait"
    assert await _admit(bus, other, "t3", order_key="other") == "run"
    await bus.complete(S, G, "a", first, order_key="conv")
    assert await _admit(bus, second, "t2") == "run"
    await bus.complete(S, G, "a", second, order_key="conv")
    unordered = await _consume_one(bus, "4")
    assert await _admit(bus, unordered, "t4") == "run"


async def test_trimmed_head_does_not_block_the_order(bus: Bus) -> None:
    bus.maxlen = 2  # type: ignore[attr-defined]
    await bus.ensure_group(S, G)
    lost = await bus.publish(S, "lost", order_key="conv")
    await bus.publish_many(S, ["x"] * 300)  # MAXLEN trims `lost` away (Redis trims approximately)
    later = await bus.publish(S, "later", order_key="conv")
    assert [m for m in await bus.read(S, START, count=1000) if m.id == lost] == []
    await bus.consume(S, G, "a", count=1000, block_ms=50)
    assert await _admit(bus, later, "t") == "run"


async def test_length_and_delete(bus: Bus) -> None:
    ids = await bus.publish_many(S, ["a", "b", "c"])
    assert await bus.length(S) == 3
    assert await bus.delete(S, [ids[0], ids[2], "1-1"]) == 2
    assert [m.payload for m in await bus.read(S)] == ["b"]
    assert await bus.length("stream:none") == 0
    assert await bus.exists(S) and not await bus.exists("stream:none")
    await bus.ensure_group("stream:empty", G)
    assert await bus.exists("stream:empty") and await bus.length("stream:empty") == 0
    assert await bus.delete("stream:none", ["1-1"]) == 0


async def test_ping(bus: Bus) -> None:
    await bus.ping()


async def test_publish_after_announces_then_enqueues_in_order(bus: Bus) -> None:
    await bus.ensure_group(S, G)
    [announced], queued = await bus.publish_after(
        Publication("stream:conv", ["announce"], ttl_s=60), S, "message", order_key="conv"
    )
    assert [m.payload for m in await bus.read("stream:conv")] == ["announce"]
    [message] = await bus.consume(S, G, "a", count=1, block_ms=50)
    assert (message.id, message.payload) == (queued, "message")
    assert await _admit(bus, queued, "t") == "run"
    assert announced


async def test_an_entry_is_first_in_order_only_with_nothing_unfinished_before_it(bus: Bus) -> None:
    """`first_in_order` promises that `admit` would say "run" on its first delivery."""
    await bus.ensure_group(S, G)
    announce = Publication("stream:conv", ["announce"])
    _, first = await bus.publish_after(announce, S, "1", order_key="conv", token="t1", token_ttl_s=1)
    _, second = await bus.publish_after(announce, S, "2", order_key="conv", token="t2")
    _, other = await bus.publish_after(announce, S, "3", order_key="other", token="t3")
    plain = await bus.publish(S, "4", order_key="plain")  # not through publish_after: never marked
    consumed = {m.id: m.first_in_order for m in await bus.consume(S, G, "a", count=4, block_ms=50)}
    assert consumed == {first: True, second: False, other: True, plain: False}
    assert await _admit(bus, first, "t1") == "run" and await _admit(bus, second, "t2") == "wait"
    await bus.complete(S, G, "a", first, order_key="conv", done_token="t1")
    await bus.complete(S, G, "a", second, order_key="conv", done_token="t2")
    await asyncio.sleep(1.1)  # t1's acceptance marker expires; its done marker stays
    _, again = await bus.publish_after(announce, S, "1 again", order_key="conv", token="t1")
    _, fresh = await bus.publish_after(announce, S, "5", order_key="conv2", token="t5")
    consumed = {m.id: m.first_in_order for m in await bus.consume(S, G, "a", count=4, block_ms=50)}
    assert consumed == {again: False, fresh: True}  # t1 ran before: ADMIT must say "done"
    assert await _admit(bus, again, "t1") == "done"


async def test_publish_after_with_a_token_publishes_once(bus: Bus) -> None:
    first = Publication("stream:conv", ["announce"], ttl_s=60)
    once = await bus.publish_after(first, S, "message", order_key="conv", token="env-1")
    again = await bus.publish_after(first, S, "message", order_key="conv", token="env-1")
    assert again == once
    assert len(await bus.read("stream:conv")) == 1
    assert len(await bus.read(S)) == 1
    other = await bus.publish_after(first, S, "message", order_key="conv", token="env-2")
    assert other != once and len(await bus.read(S)) == 2


async def test_prune_forgets_only_idle_consumers_that_hold_nothing(bus: Bus) -> None:
    await bus.ensure_group(S, G)
    await bus.publish_many(S, ["1", "2"])
    await bus.consume(S, G, "holder", count=1, block_ms=50)
    [done] = await bus.consume(S, G, "idle", count=1, block_ms=50)
    await bus.complete(S, G, "idle", done.id)
    assert await bus.prune_consumers(S, G, idle_ms=60_000) == []
    await asyncio.sleep(0.06)
    assert await bus.prune_consumers(S, G, idle_ms=50) == ["idle"]  # "holder" still has a message
    assert await bus.prune_consumers("stream:none", G, idle_ms=0) == []


async def test_read_many_returns_only_streams_with_new_entries(bus: Bus) -> None:
    a = await bus.publish("stream:a", "a1")
    await bus.publish("stream:b", "b1")
    got = await bus.read_many({"stream:a": START, "stream:b": START, "stream:none": START})
    assert {k: [m.payload for m in v] for k, v in got.items()} == {"stream:a": ["a1"], "stream:b": ["b1"]}
    assert await bus.read_many({"stream:a": a, "stream:none": START}, block_ms=50) == {}
    assert await bus.read_many({}) == {}


async def test_read_many_blocks_until_any_stream_gets_an_entry(bus: Bus) -> None:
    async def later() -> None:
        await asyncio.sleep(0.05)
        await bus.publish("stream:b", "late")

    task = asyncio.create_task(later())
    got = await bus.read_many({"stream:a": START, "stream:b": START}, block_ms=5000)
    assert {k: [m.payload for m in v] for k, v in got.items()} == {"stream:b": ["late"]}
    await task


async def test_a_parked_entry_keeps_its_turn_until_the_last_decision_enqueues_its_resume(bus: Bus) -> None:
    inbox, events = "chat:park", "stream:park"
    await bus.ensure_group(inbox, "g")
    first = await bus.publish(inbox, "m1", order_key="c1")
    second = await bus.publish(inbox, "m2", order_key="c1")
    await bus.consume(inbox, "g", "me", count=10, block_ms=100)
    assert await bus.admit(inbox, "g", "me", first, order_key="c1", token="m1", max_deliveries=5) == "run"
    calls = [
        {"call_id": "a", "tool": "terminal", "arguments": {}},
        {"call_id": "b", "tool": "todo", "arguments": {}},
    ]
    record = json.dumps({"calls": calls, "decisions": {}, "inbox_id": first, "resume": "R", "resumed": None})
    park = Parking("approval:c1", record, ttl_s=60, due_key="due", due_member="c1", due_at=time.time() + 30)
    assert await bus.complete(inbox, "g", "me", first, order_key="c1", park=park) == "ok"
    assert await bus.admit(inbox, "g", "me", second, order_key="c1", token="m2", max_deliveries=5) == "wait"
    assert await bus.due("due", time.time() + 60) == ["c1"]
    assert await bus.due("due", time.time()) == []
    assert await bus.ranked_count("due") == 1  # what /agents reports as awaiting approval

    async def decide(call: str, decision: str) -> tuple[str, str | None]:
        event = Publication(events, [json.dumps({"call": call})])
        return await bus.decide(
            "approval:c1", call, json.dumps({"decision": decision}), event=event, order_key="c1",
            inbox=inbox, due_key="due", due_member="c1",
        )  # fmt: skip

    assert await decide("nope", "approve") == ("unknown", None)
    assert await decide("a", "approve") == ("pending", None)
    verdict, earlier = await decide("a", "reject")
    assert verdict == "decided" and json.loads(earlier or "") == {"decision": "approve"}
    verdict, resumed = await decide("b", "reject")
    assert verdict == "resumed" and resumed is not None
    assert [m.payload for m in await bus.read(events)] == ['{"call": "a"}', '{"call": "b"}']
    assert await bus.due("due", time.time() + 60) == []
    assert await bus.ranked_count("due") == 0
    [resume] = await bus.consume(inbox, "g", "me", count=10, block_ms=100)
    assert resume.id == resumed and resume.payload == "R"
    assert await bus.admit(inbox, "g", "me", resumed, order_key="c1", token="m1", max_deliveries=5) == "run"
    assert await bus.admit(inbox, "g", "me", second, order_key="c1", token="m2", max_deliveries=5) == "wait"
    await bus.complete(inbox, "g", "me", resumed, order_key="c1", done_token="m1")
    assert await bus.admit(inbox, "g", "me", second, order_key="c1", token="m2", max_deliveries=5) == "run"
    assert json.loads(await bus.get_value("approval:c1") or "")["resumed"] == resumed


async def test_index_updates_apply_once_with_an_accepted_entry(bus: Bus) -> None:
    inbox, announce = "chat:index", Publication("stream:index", ["hello"])
    index = [
        Tally("observer:c1", increments={"messages": 1, "edge:a>b": 2}, fields={"last": "x"}, ttl_s=60),
        Tally("observer:c1", defaults={"first": "1"}),
        Ranking("observer:all", "c1", 1000.0, keep=2, ttl_s=60),
    ]
    await bus.publish_after(announce, inbox, "m1", order_key="c1", token="t1", index=index)
    await bus.publish_after(announce, inbox, "m1", order_key="c1", token="t1", index=index)  # a retry
    later = [Tally("observer:c1", increments={"messages": 1}, defaults={"first": "2"})]
    await bus.publish_after(announce, inbox, "m2", order_key="c1", token="t2", index=later)
    assert await bus.tally("observer:c1") == {"messages": "2", "edge:a>b": "2", "last": "x", "first": "1"}
    assert await bus.tally("observer:none") == {}
    for member, score in [("c2", 3000.0), ("c3", 2000.0)]:
        ranking = [Ranking("observer:all", member, score, keep=2)]
        await bus.publish_after(announce, inbox, member, order_key=member, index=ranking)
    # keeps the 2 highest scores, newest first; `below` pages
    assert await bus.ranked("observer:all") == [("c2", 3000.0), ("c3", 2000.0)]
    assert await bus.ranked("observer:all", below=3000.0, limit=5) == [("c3", 2000.0)]
    assert await bus.ranked_count("observer:all") == 2
    assert await bus.ranked("observer:none") == [] and await bus.ranked_count("observer:none") == 0


async def test_queue_health_counts_backlog_in_flight_and_consumers(bus: Bus) -> None:
    empty = await bus.queue_health("chat:health", G)
    assert (empty.backlog, empty.in_flight, empty.consumers) == (0, 0, [])
    await bus.ensure_group("chat:health", G)
    ids = [await bus.publish("chat:health", f"m{i}") for i in range(5)]
    await bus.consume("chat:health", G, "w1", count=2, block_ms=100)
    health = await bus.queue_health("chat:health", G)
    assert (health.backlog, health.in_flight) == (3, 2)
    assert [(c.name, c.pending) for c in health.consumers] == [("w1", 2)]
    assert health.consumers[0].idle_ms < 5_000
    assert 0 <= health.oldest_pending_s < 5 and health.last_entry_ms == parse_id(ids[-1])[0]
    await bus.complete("chat:health", G, "w1", ids[0])
    assert (await bus.queue_health("chat:health", G)).in_flight == 1
