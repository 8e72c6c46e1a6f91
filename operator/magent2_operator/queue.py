"""A Kopf timer that reads each Agent's queue from Redis (backlog, in flight, oldest pending, dead
letters) into its status, with an Event on notable changes; it also makes sure the Agent's inbox
exists, so an Agent that no worker ever started (autoscaled, at zero) can be sent to at once, and
KEDA finds its consumer group to measure."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from pydantic import ValidationError

from magent2.bus import BusUnavailable, Keys, RedisStreamsBus
from magent2.bus.api import GROUP as CONSUMER_GROUP
from magent2.contracts import AgentSpec
from magent2_operator import GROUP, PLURAL, VERSION
from magent2_operator.handlers import SETTINGS
from magent2_operator.status import notable, queue_status

log = logging.getLogger("magent2.operator")


@kopf.on.startup()
async def connect(memo: kopf.Memo, **_: Any) -> None:
    """One bus client for every Agent's timer (none without a Redis URL: no queue status then)."""
    memo.bus = RedisStreamsBus(SETTINGS.bus_url) if SETTINGS.bus_url else None


@kopf.on.cleanup()
async def disconnect(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("bus") is not None:
        await memo.bus.close()


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.queue_seconds, id="queue")
async def measure(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    bus: RedisStreamsBus | None = memo.get("bus")
    if bus is None:
        return
    try:
        agent = AgentSpec.model_validate(dict(spec))
    except ValidationError:
        return  # the reconcile handler reports it
    keys, name = Keys(SETTINGS.bus_prefix), agent.agent_name or meta["name"]
    try:
        await bus.ensure_group(keys.inbox(name), CONSUMER_GROUP)
        health = await bus.queue_health(keys.inbox(name), CONSUMER_GROUP)
        dead = await bus.length(keys.dead_letters(name))
    except BusUnavailable as exc:
        log.warning("queue of %s: %s", name, exc)
        return
    old, new = dict(status), queue_status(health, dead)
    for key, value in new.items():
        if old.get(key) != value:
            patch.status[key] = value
    for reason, message in notable(
        old, new, ready=int(old.get("readyReplicas") or 0), autoscaled=agent.autoscaling is not None
    ):
        kopf.warn(body, reason=reason, message=message)
