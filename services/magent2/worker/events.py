"""Publishing runs' events: every run's tokens, written for the whole worker in one pipelined
write per few milliseconds, so N streaming runs cost one Redis round trip per window, not one per
token. Deltas of one run that arrive within the same window (a loaded worker reads the model's
stream in bursts) become one `token` event with their text joined, so a burst costs one event
all the way to the client, not one per delta."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from magent2.bus import Bus, Publication
from magent2.contracts import FINAL_EVENTS, StreamEvent, TokenEvent

COALESCE_S = 0.002  # what an event may wait for company before it is written


class _Tokens:
    """Consecutive token events of one run not written yet: the first one, with the text of all."""

    def __init__(self, first: TokenEvent) -> None:
        self.first, self.texts = first, [first.text]

    def to_json(self) -> str:
        if len(self.texts) == 1:
            return self.first.to_json()
        return self.first.model_copy(update={"text": "".join(self.texts)}).to_json()


Pending = list[str | _Tokens]


def _payloads(pending: Pending) -> list[str]:
    return [item if isinstance(item, str) else item.to_json() for item in pending]


class EventWriter:
    """The worker's one writer of run events. `put` never waits on the network; `coalesce_s`
    after the first unwritten event, whatever all runs queued is written in one `publish_batch`.
    A failed write is reported to each run that had events in it (at its next `put` or `drain`)."""

    def __init__(self, bus: Bus, *, coalesce_s: float = COALESCE_S) -> None:
        self.bus, self.coalesce_s = bus, coalesce_s
        self._pending: dict[str, tuple[Pending, int | None]] = {}
        self._failed: dict[str, BaseException] = {}
        self._due: asyncio.TimerHandle | None = None  # the next write, once its window ends
        self._writing: tuple[set[str], asyncio.Task[None]] | None = None

    def sink(
        self, stream: str, *, ttl_s: int | None, watch: Callable[[StreamEvent], None] | None = None
    ) -> EventSink:
        return EventSink(self, stream, ttl_s=ttl_s, watch=watch)

    def put(self, stream: str, event: StreamEvent, ttl_s: int | None) -> None:
        self.raise_failure(stream)
        pending = self._pending.setdefault(stream, ([], ttl_s))[0]
        if isinstance(event, TokenEvent):
            if pending and isinstance(last := pending[-1], _Tokens):
                last.texts.append(event.text)
            else:
                pending.append(_Tokens(event))
        else:
            pending.append(event.to_json())
        if self._due is None and self._writing is None:
            self._due = asyncio.get_running_loop().call_later(self.coalesce_s, self._write_pending)

    def raise_failure(self, stream: str) -> None:
        if (failure := self._failed.pop(stream, None)) is not None:
            raise failure

    async def take(self, stream: str) -> list[str]:
        """What `stream` has queued and not yet written (no longer to be written by the flusher),
        after any write of its earlier events has finished; re-raises that write's failure."""
        rest, _ = self._pending.pop(stream, ([], None))
        if not self._pending and self._due is not None:  # nothing left to write: no wake-up for it
            self._due.cancel()
            self._due = None
        if self._writing is not None and stream in self._writing[0]:
            await asyncio.wait([self._writing[1]])
        self.raise_failure(stream)
        return _payloads(rest)

    def discard(self, stream: str) -> None:
        self._pending.pop(stream, None)
        self._failed.pop(stream, None)

    def _write_pending(self) -> None:
        """The window is over: write what all runs queued (one write at a time; what comes
        meanwhile waits for the next). A run that ended within the window has taken its events
        already: they go with its completion, in one write."""
        self._due = None
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        self._writing = (set(batch), asyncio.create_task(self._write(batch), name="events"))

    async def _write(self, batch: dict[str, tuple[Pending, int | None]]) -> None:
        try:
            await self.bus.publish_batch([Publication(s, _payloads(p), ttl) for s, (p, ttl) in batch.items()])
        except Exception as exc:  # BusUnavailable above all: each run learns it at its next step
            for stream in batch:
                self._failed[stream] = exc
        finally:
            self._writing = None
            if self._pending and self._due is None:
                self._due = asyncio.get_running_loop().call_later(self.coalesce_s, self._write_pending)

    async def close(self) -> None:
        if self._due is not None:
            self._due.cancel()
        if self._writing is not None:
            await asyncio.wait([self._writing[1]])


class EventSink:
    """One run's events. From the first final event (`output`/`error`) on, nothing more goes to
    the writer: `drain` hands back what is unwritten, so the run's outcome is only ever published
    by the fenced completion, atomically with the ack."""

    def __init__(
        self,
        writer: EventWriter,
        stream: str,
        *,
        ttl_s: int | None,
        watch: Callable[[StreamEvent], None] | None = None,
    ) -> None:
        self.writer, self.stream, self.ttl_s, self.watch = writer, stream, ttl_s, watch
        self._held: list[str] = []  # the outcome and anything after it, kept for `drain`
        self._tokens: list[str] = []

    @property
    def text(self) -> str:
        """The text streamed so far (what a cancelled run had said)."""
        return "".join(self._tokens)

    def put(self, event: StreamEvent) -> None:
        if self.watch is not None:
            self.watch(event)
        if event.event == "token":
            self._tokens.append(event.text)
        if self._held or event.event in FINAL_EVENTS:
            self.writer.raise_failure(self.stream)  # surface a failed write to the run at once
            self._held.append(event.to_json())
            return
        self.writer.put(self.stream, event, self.ttl_s)

    async def drain(self) -> list[str]:
        """Wait for a write in progress (re-raising its failure) and return what is left."""
        rest = await self.writer.take(self.stream)
        held, self._held = self._held, []
        return rest + held

    def abort(self) -> None:
        self.writer.discard(self.stream)
