"""The consume loop: inbox -> runner -> conversation event stream, with the delivery guarantees
of DESIGN.md (per-conversation order across replicas, de-duplication, leases, reclaim, fenced
completion, dead letters)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from pydantic import ValidationError

from magent2 import telemetry
from magent2.bus import Bus, BusMessage, BusUnavailable, Keys, Publication
from magent2.bus.api import GROUP, Admission, Parking, parse_id
from magent2.contracts import (
    AgentCard,
    CancelledEvent,
    ControlCommand,
    DeadLetter,
    Decision,
    ErrorEvent,
    MessageEnvelope,
    PendingApproval,
    RunStartedEvent,
)
from magent2.control.approvals import Approvals, is_resume, pending
from magent2.control.cancel import Cancellations
from magent2.control.listener import listen
from magent2.control.policy import publish_card
from magent2.observer.queries import queue_facts
from magent2.tools.fanout import child_done
from magent2.worker.events import EventSink, EventWriter
from magent2.worker.metrics import WorkerMetrics
from magent2.worker.runner import RunFailed, Runner, RunPaused

log = logging.getLogger("magent2.worker")
GAUGE_EVERY_S = 5.0  # how often the queue gauges are read from the bus

T = TypeVar("T")


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(order=True)
class _Queued:
    sort_key: tuple[int, int, int]  # (0 for a resume, else 1), then the stream id
    message: BusMessage = field(compare=False)
    envelope: MessageEnvelope = field(compare=False)
    fresh: bool = field(compare=False)  # its first delivery (consumed, not reclaimed)


@dataclass
class _Lane:
    """Messages of one conversation held by this worker, smallest stream id first."""

    heap: list[_Queued] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Worker:
    def __init__(
        self,
        bus: Bus,
        runner: Runner,
        *,
        agent_name: str,
        keys: Keys | None = None,
        concurrency: int = 8,
        visibility_timeout_s: float = 30,
        shutdown_grace_s: float = 20,
        max_attempts: int = 3,
        max_deliveries: int = 5,
        events_ttl_s: int | None = None,
        consumer: str | None = None,
        retry_backoff_s: float = 0.5,
        forget_consumers_after_s: float = 3600,
        metrics: WorkerMetrics | None = None,
        card: AgentCard | None = None,
        approval_timeout_s: int = 300,
        approval_on_timeout: Decision = "reject",
    ) -> None:
        self.bus, self.runner, self.agent_name = bus, runner, agent_name
        self.keys = keys or Keys()
        self.inbox = self.keys.inbox(agent_name)
        self.dead_letters = self.keys.dead_letters(agent_name)
        self.metrics = metrics or WorkerMetrics()
        self.card = card or AgentCard()
        self.cancellations = Cancellations()
        self.consumer = consumer or consumer_name()
        self.concurrency = concurrency
        self.visibility_ms = int(visibility_timeout_s * 1000)
        self.shutdown_grace_s = shutdown_grace_s
        self.max_attempts = max_attempts
        self.max_deliveries = max_deliveries
        self.events_ttl_s = events_ttl_s
        self.events = EventWriter(bus)
        self.approvals = Approvals(
            bus,
            self.keys,
            agent_name,
            timeout_s=approval_timeout_s,
            on_timeout=approval_on_timeout,
            events_ttl_s=events_ttl_s,
        )
        self.retry_backoff_s = retry_backoff_s
        self.forget_consumers_after_ms = int(forget_consumers_after_s * 1000)
        self._running = asyncio.Semaphore(concurrency)
        self._lanes: dict[str, _Lane] = {}
        self._held: set[str] = set()  # message ids this worker holds (queued or running)
        self._runs: dict[str, asyncio.Task[Any]] = {}  # message id -> its run, while it runs
        self._lost: set[str] = set()  # running messages another consumer took over
        self._stopping = asyncio.Event()
        self._room = asyncio.Event()
        self._chores: set[asyncio.Task[None]] = set()  # fire-and-forget acks, kept referenced
        self.last_beat = time.monotonic()  # the consume loop's heartbeat, for liveness probes

    # -- lifecycle --------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the inbox until `stop()`; then finish or hand back what is held."""
        try:
            await self._retrying(lambda: self.bus.ensure_group(self.inbox, GROUP))
        except BusUnavailable as exc:  # stopped before Redis ever answered
            log.warning("worker %s stopped before reaching Redis: %s", self.consumer, exc)
            return
        with contextlib.suppress(BusUnavailable):  # the gateway falls back to the defaults
            await publish_card(self.bus, self.keys, self.agent_name, self.card)
        log.info("worker %s consuming %s (concurrency %d)", self.consumer, self.inbox, self.concurrency)
        background = [
            asyncio.create_task(self._renew_leases(), name="leases"),
            asyncio.create_task(self._reclaim_forever(), name="reclaim"),
            asyncio.create_task(listen(self.bus, self.keys, self.agent_name, self._control), name="control"),
        ]
        try:
            await self._consume_forever()
        finally:
            for task in background:
                task.cancel()
            await self._drain()
            await self.events.close()

    def _control(self, command: ControlCommand) -> None:
        if self.cancellations.apply(command):
            log.info("cancelling the run of %s on request", command.conversation_id)

    def stop(self) -> None:
        self._stopping.set()
        self._room.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- intake ------------------------------------------------------------------------------
    async def _consume_forever(self) -> None:
        while not self.stopping:
            self.last_beat = time.monotonic()
            free = self.concurrency - len(self._held)
            if free <= 0:  # all slots busy: wait for one, but keep the heartbeat going
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 1.0)
                continue
            try:
                messages = await self.bus.consume(self.inbox, GROUP, self.consumer, count=free, block_ms=500)
            except BusUnavailable as exc:
                log.warning("inbox %s: %s; retrying", self.inbox, exc)
                await self._pause(1.0)
                continue
            for message in messages:
                self._accept(message, fresh=True)

    async def _reclaim_forever(self) -> None:
        """Adopt messages whose consumer died. Runs even when every slot is taken by messages
        waiting for their turn: the message they wait for may be one of these."""
        # Often enough that messages handed back by a stopping worker are picked up within a second.
        interval = min(max(self.visibility_ms / 2000, 0.05), 1.0)
        prune_every_s = self.forget_consumers_after_ms / 1000 / 10  # ten looks per forgetting period
        last_prune = last_gauge = 0.0
        while not self.stopping:
            if time.monotonic() - last_prune > prune_every_s:
                last_prune = time.monotonic()
                await self._forget_gone_consumers()
            with contextlib.suppress(BusUnavailable):
                if time.monotonic() - last_gauge > GAUGE_EVERY_S:
                    last_gauge = time.monotonic()
                    await self._measure_queue()
                await self.approvals.expire_due()
            try:
                claimed = await self.bus.reclaim(
                    self.inbox, GROUP, self.consumer, min_idle_ms=self.visibility_ms, count=self.concurrency
                )
            except BusUnavailable as exc:
                log.warning("reclaim on %s: %s", self.inbox, exc)
                claimed = []
            for message in claimed:
                if message.id not in self._held:
                    log.info("reclaimed %s from a dead consumer", message.id)
                    self._accept(message, fresh=False)
            await self._pause(interval)

    async def _forget_gone_consumers(self) -> None:
        """Each worker process is a consumer of its own; drop those of processes long gone."""
        with contextlib.suppress(BusUnavailable):
            gone = await self.bus.prune_consumers(self.inbox, GROUP, idle_ms=self.forget_consumers_after_ms)
            if gone:
                log.info("forgot %d idle consumer(s) of %s", len(gone), self.inbox)

    async def _renew_leases(self) -> None:
        interval = max(self.visibility_ms / 3000, 0.02)
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(BusUnavailable):
                lost = await self.bus.touch(self.inbox, GROUP, self.consumer, sorted(self._held))
                self._give_up(lost)

    def _give_up(self, lost: list[str]) -> None:
        """Another consumer took these over (this worker froze or lost Redis past its lease):
        stop their runs. Queued ones are dropped when admission finds them lost."""
        for message_id in lost:
            run = self._runs.get(message_id)
            if run is not None and message_id not in self._lost:
                log.warning("lease on %s lost to another worker; stopping its run here", message_id)
                self._lost.add(message_id)
                run.cancel()

    def _accept(self, message: BusMessage, *, fresh: bool) -> None:
        try:
            envelope = MessageEnvelope.model_validate_json(message.payload)
        except ValidationError as exc:
            log.error("malformed message %s goes to %s: %s", message.id, self.dead_letters, exc)
            reason = f"malformed envelope: {exc.error_count()} validation error(s)"
            chore = asyncio.create_task(self._dead_letter(message, None, reason))
            self._chores.add(chore)
            chore.add_done_callback(self._chores.discard)
            return
        self._held.add(message.id)
        lane = self._lanes.get(envelope.conversation_id)
        if lane is None:
            lane = self._lanes[envelope.conversation_id] = _Lane()
        # A resumed run holds its conversation's turn although newer than what waits behind it.
        key = (0 if is_resume(envelope) else 1, *parse_id(message.id))
        heapq.heappush(lane.heap, _Queued(key, message, envelope, fresh))
        lane.wake.set()
        if lane.task is None:
            lane.task = asyncio.create_task(
                self._run_lane(envelope.conversation_id, lane), name=f"lane:{envelope.conversation_id}"
            )

    # -- one conversation ---------------------------------------------------------------------
    async def _run_lane(self, conversation_id: str, lane: _Lane) -> None:
        backoff = 0.005
        try:
            while lane.heap and not self.stopping:
                head = lane.heap[0]
                admission: Admission = "run"  # a first delivery of a first in order: no need to ask
                if not (head.fresh and head.message.first_in_order):
                    admission = await self._retrying(
                        partial(
                            self.bus.admit,
                            self.inbox,
                            GROUP,
                            self.consumer,
                            head.message.id,
                            order_key=conversation_id,
                            token=head.envelope.id,
                            max_deliveries=self.max_deliveries,
                        )
                    )
                if admission == "wait":
                    # An earlier message of this conversation runs elsewhere (or must be reclaimed).
                    lane.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lane.wake.wait(), backoff)
                    backoff = min(backoff * 2, 0.25)
                    continue
                backoff = 0.005
                heapq.heappop(lane.heap)
                if admission == "lost":
                    log.info("message %s is held by another worker now; skipping it", head.message.id)
                elif admission == "done":
                    log.info("message %s already done; acknowledging the duplicate", head.envelope.id)
                    await self._complete(head.message, head.envelope, done=False)
                elif admission == "dead":
                    reason = f"delivered more than {self.max_deliveries} times without finishing"
                    log.error("message %s %s: moving it to %s", head.envelope.id, reason, self.dead_letters)
                    await self._dead_letter(head.message, head.envelope, reason)
                elif await self._slot():
                    try:
                        await self._process(head.message, head.envelope)
                    finally:
                        self._running.release()
                else:  # stopping while waiting for a slot: this one never started
                    heapq.heappush(lane.heap, head)
                    break
                self._held.discard(head.message.id)
                self._room.set()
        except BusUnavailable as exc:  # raised by _retrying only once the worker is stopping
            log.warning(
                "stopping while Redis is unavailable (%s): %s stays pending for another worker",
                exc,
                conversation_id,
            )
        finally:
            lane.task = None
            if lane.heap:  # stopping, or cancelled: hand back what never started
                await self._hand_back([queued.message.id for queued in lane.heap])
                lane.heap.clear()
            if self._lanes.get(conversation_id) is lane:
                del self._lanes[conversation_id]

    async def _slot(self) -> bool:
        """Take a run slot; False if the worker starts stopping before one is free."""
        if not self._running.locked():
            await self._running.acquire()
            return True
        slot = asyncio.ensure_future(self._running.acquire())
        stop = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait([slot, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if slot.done() and not slot.cancelled():
            if not self.stopping:
                return True
            self._running.release()
        slot.cancel()
        return False

    async def _process(self, message: BusMessage, envelope: MessageEnvelope) -> None:
        conversation = envelope.conversation_id
        accepted_ms = parse_id(message.id)[0]  # the inbox id is its acceptance time
        meter = self.metrics.run(accepted_ms=accepted_ms)
        sink = self.events.sink(self.keys.events(conversation), ttl_s=self.events_ttl_s, watch=meter.observe)
        sink.put(RunStartedEvent(conversation_id=conversation, message_id=envelope.id, agent=self.agent_name))
        with telemetry.run_span(envelope, accepted_ms=accepted_ms):  # the run task inherits its context
            run = self._runs[message.id] = asyncio.create_task(self._run_with_retries(envelope, sink))
        self.cancellations.started(conversation, message.id, run)
        try:
            paused = await run
            last_events = await sink.drain()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            stopping = bool(current and current.cancelling())  # this worker is being stopped
            cancelled = self.cancellations.ended(conversation, message.id)
            if cancelled is not None and message.id not in self._lost and not stopping:
                # Stopped on request: that is its outcome, published like any other.
                sink.put(self._cancelled(envelope, sink.text, cancelled))
                last_events, paused = await sink.drain(), None
            else:
                sink.abort()
                if message.id in self._lost and not stopping:
                    return  # taken over: the new holder publishes the outcome
                await self._hand_back([message.id])
                raise
        except BusUnavailable as exc:
            # Could not publish: leave the message pending; it is retried after the lease lapses.
            sink.abort()
            log.error("message %s: events not published (%s); it will be retried", envelope.id, exc)
            return
        finally:
            del self._runs[message.id]
            self._lost.discard(message.id)
            self.cancellations.ended(conversation, message.id)
        meter.finish(paused=paused is not None)
        if paused is not None:  # waits for a decision: the conversation keeps its turn, no worker waits
            parking, requests = self.approvals.park(envelope, message.id, paused.state, paused.calls)
            last_events += [request.to_json() for request in requests]
            log.info("message %s waits for approval of %s", envelope.id, [c.tool for c in paused.calls])
        await self._complete(
            message,
            envelope,
            done=paused is None,
            publish=[Publication(sink.stream, last_events, sink.ttl_s)],
            park=parking if paused is not None else None,
        )

    async def _run_with_retries(self, envelope: MessageEnvelope, sink: EventSink) -> RunPaused | None:
        """Run the message (retrying what may succeed next time) into `sink`; what paused it, if
        a tool call waits for approval."""
        resume: PendingApproval | None = None
        if is_resume(envelope):
            resume = await pending(self.bus, self.keys, envelope.conversation_id)
            if resume is None or resume.message_id != envelope.id:
                gone = "its approval record is gone: nothing to resume"
                sink.put(self._error(envelope, gone, retryable=False))
                return None
        elif envelope.type != "message":
            sink.put(self._error(envelope, f"unsupported envelope type {envelope.type!r}", retryable=False))
            return None
        for attempt in range(1, self.max_attempts + 1):
            try:
                # Runners that never pause may take the envelope alone.
                events = self.runner.run(envelope, resume) if resume else self.runner.run(envelope)
                async for event in events:
                    sink.put(event)
                return None
            except RunPaused as paused:
                return paused
            except RunFailed as exc:
                if not exc.retryable or attempt == self.max_attempts:
                    log.warning("message %s failed after %d attempt(s): %s", envelope.id, attempt, exc)
                    sink.put(self._error(envelope, str(exc), retryable=exc.retryable))
                    return None
                log.warning("message %s attempt %d failed (%s); retrying", envelope.id, attempt, exc)
                await asyncio.sleep(self.retry_backoff_s * 2 ** (attempt - 1))
            except BusUnavailable:
                raise
            except Exception as exc:
                log.exception("message %s failed", envelope.id)
                sink.put(self._error(envelope, f"{type(exc).__name__}: {exc}", retryable=False))
                return None
        return None

    @staticmethod
    def _cancelled(envelope: MessageEnvelope, partial_text: str, reason: str) -> CancelledEvent:
        return CancelledEvent(
            conversation_id=envelope.conversation_id,
            message_id=envelope.id,
            partial_text=partial_text,
            reason=reason,
        )

    @staticmethod
    def _error(envelope: MessageEnvelope, text: str, *, retryable: bool) -> ErrorEvent:
        return ErrorEvent(
            conversation_id=envelope.conversation_id,
            message=text,
            retryable=retryable,
            message_id=envelope.id,
        )

    async def _complete(
        self,
        message: BusMessage,
        envelope: MessageEnvelope | None,
        *,
        done: bool,
        publish: list[Publication] | None = None,
        park: Parking | None = None,
    ) -> None:
        if envelope is not None and park is None and publish:
            # a fan-out child tells its parent, in the same atomic step as its outcome
            publish = [*publish, *child_done(self.keys, envelope, publish, self.events_ttl_s)]
        verdict = await self._retrying(
            partial(
                self.bus.complete,
                self.inbox,
                GROUP,
                self.consumer,
                message.id,
                order_key=envelope.conversation_id if envelope else None,
                done_token=envelope.id if envelope and done else None,
                publish=publish or (),
                park=park,
            )
        )
        self.metrics.completions.labels(verdict).inc()
        if verdict == "lost":
            log.warning(
                "message %s was taken over by another worker; this run's outcome is discarded", message.id
            )

    async def _measure_queue(self) -> None:
        self.metrics.queue(await queue_facts(self.bus, self.keys, self.agent_name))

    async def _dead_letter(self, message: BusMessage, envelope: MessageEnvelope | None, reason: str) -> None:
        """Move a message out of the inbox into the dead-letter stream, telling its conversation."""
        letter = DeadLetter(
            message_id=message.id, agent=self.agent_name, reason=reason, payload=message.payload
        )
        publish = [Publication(self.dead_letters, [letter.to_json()])]
        if envelope is not None:
            text = f"message {envelope.id} was moved to the dead-letter queue: {reason}"
            error = self._error(envelope, text, retryable=False)
            publish.append(
                Publication(self.keys.events(envelope.conversation_id), [error.to_json()], self.events_ttl_s)
            )
        await self._complete(message, envelope, done=False, publish=publish)
        self.metrics.dead_lettered.inc()

    # -- shutdown -----------------------------------------------------------------------------
    async def _drain(self) -> None:
        lanes = [lane.task for lane in self._lanes.values() if lane.task is not None]
        if lanes:
            log.info("finishing %d conversation(s), up to %.0fs", len(lanes), self.shutdown_grace_s)
            _, unfinished = await asyncio.wait(lanes, timeout=self.shutdown_grace_s)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        log.info("worker %s stopped", self.consumer)

    async def _hand_back(self, ids: list[str]) -> None:
        """Make held messages immediately reclaimable by another worker."""
        self._held.difference_update(ids)
        self._room.set()
        with contextlib.suppress(BusUnavailable):
            await self.bus.release(self.inbox, GROUP, self.consumer, ids, idle_ms=self.visibility_ms + 1)

    # -- helpers ------------------------------------------------------------------------------
    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _retrying(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Retry a bus operation through an outage (with back-off); give up only on shutdown."""
        delay = 0.1
        while True:
            try:
                return await operation()
            except BusUnavailable as exc:
                if self.stopping and delay > 1:
                    raise
                log.warning("bus unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
