"""The Bus API: append-only streams, blocking readers, consumer groups with leases.

Two implementations pass one contract suite: `RedisStreamsBus` (production, shared by replicas)
and `InMemoryBus` (local mode and tests). Cursors are Redis stream ids ("<ms>-<seq>") in both.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

GROUP = "workers"  # the consumer group of every inbox: one consumer per worker process
START = "0-0"  # read from the beginning of a stream
LATEST = "$"  # read only entries added after the call


class ConversationBusy(RuntimeError):
    """`publish_after(..., only_if_idle=True)`: an earlier message of the conversation is unfinished."""


class BusUnavailable(RuntimeError):
    """The backing store cannot be reached; the operation may be retried.

    `outcome_unknown` is False only when the request certainly never reached the store (the
    connection could not be made); otherwise a write may or may not have been applied."""

    def __init__(self, message: str, *, outcome_unknown: bool = True) -> None:
        super().__init__(message)
        self.outcome_unknown = outcome_unknown


@dataclass(frozen=True, slots=True)
class BusMessage:
    id: str
    payload: str
    # Appended by `publish_after` while nothing under its order key was unfinished and its
    # token never completed: on its first delivery `admit` could only answer "run".
    first_in_order: bool = False


@dataclass(frozen=True, slots=True)
class Keys:
    """Every key name in one place; `prefix` is BUS_PREFIX."""

    prefix: str = ""

    def inbox(self, agent: str) -> str:
        return f"{self.prefix}chat:{agent}"

    def events(self, conversation_id: str) -> str:
        return f"{self.prefix}stream:{conversation_id}"

    def control(self, agent: str) -> str:
        return f"{self.prefix}control:{agent}"

    def agent_card(self, agent: str) -> str:
        return f"{self.prefix}agent:{agent}"

    def approval(self, conversation_id: str) -> str:
        """The conversation's run paused for approval (`PendingApproval`)."""
        return f"{self.prefix}approval:{conversation_id}"

    def approvals_due(self, agent: str) -> str:
        """Sorted set: conversations of `agent` waiting for approval, scored by expiry (unix s)."""
        return f"{self.prefix}approvals:{agent}:due"

    def dead_letters(self, agent: str) -> str:
        return f"{self.prefix}dlq:{agent}"

    def wake(self, reader: str) -> str:
        """A gateway stream reader's own stream: an entry there ends its blocking read early."""
        return f"{self.prefix}gateway:{reader}:wake"

    def conversations(self) -> str:
        """Observer index: sorted set of conversation ids scored by their last message (unix ms)."""
        return f"{self.prefix}observer:conversations"

    def conversation(self, conversation_id: str) -> str:
        """Observer index: a conversation's counters (messages, agents, edges, children)."""
        return f"{self.prefix}observer:conversation:{conversation_id}"

    def signal(self, topic: str) -> str:
        return f"{self.prefix}signal:{topic}"

    @property
    def inbox_prefix(self) -> str:
        return f"{self.prefix}chat:"


# run: start it now; wait: an earlier message of its conversation is unfinished; done: it ran
# before (a duplicate); lost: this consumer no longer holds it; dead: delivered too often.
Admission = Literal["run", "wait", "done", "lost", "dead"]
# ok: published and acked; duplicate: nothing published, its outcome was published before;
# lost: nothing at all (another consumer holds it now and will publish the outcome).
Completion = Literal["ok", "duplicate", "lost"]


@dataclass(frozen=True, slots=True)
class Publication:
    """Entries to append to `stream` as part of another operation."""

    stream: str
    payloads: Sequence[str]
    ttl_s: int | None = None


@dataclass(frozen=True)
class Parking:
    """What `complete` leaves for a run paused for approval: its record (kept `ttl_s`), and an
    entry in `due_key` scored by its expiry; the conversation keeps its turn meanwhile."""

    record_key: str
    record: str
    ttl_s: int
    due_key: str
    due_member: str
    due_at: float  # unix seconds


@dataclass(frozen=True, slots=True)
class Tally:
    """A hash updated together with another write (the observer's index): `increments` added,
    `fields` set, `defaults` set only when absent; the key expires `ttl_s` after the update."""

    key: str
    increments: Mapping[str, int] = field(default_factory=dict)
    fields: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)
    ttl_s: int | None = None


@dataclass(frozen=True, slots=True)
class Ranking:
    """`member` scored `score` in the sorted set `key`, which keeps only its `keep` highest."""

    key: str
    member: str
    score: float
    keep: int
    ttl_s: int | None = None


IndexUpdate = Tally | Ranking


@dataclass(frozen=True, slots=True)
class ConsumerState:
    name: str
    idle_ms: int  # since its last read, claim or renewal
    pending: int


@dataclass(frozen=True, slots=True)
class QueueHealth:
    """A consumer group's queue: entries never delivered (backlog), delivered and not acked
    (in flight), the age of the oldest in-flight entry, and the group's consumers."""

    backlog: int
    in_flight: int
    oldest_pending_s: float
    last_entry_ms: int  # unix ms of the newest entry (0: none)
    consumers: list[ConsumerState]


# unknown: no such pending call; decided: it was decided before; pending: other calls still wait;
# resumed: that was the last decision, the run's resume entry is queued.
Verdict = Literal["unknown", "decided", "pending", "resumed"]


# Redis stream ids: <ms>[-<seq>], each part an unsigned 64-bit integer, ASCII digits only.
_CURSOR = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?", re.ASCII)
_U64_MAX = 2**64 - 1


def is_cursor(text: str) -> bool:
    """Whether `text` is a stream id a reader may resume after (`<ms>` or `<ms>-<seq>`)."""
    found = _CURSOR.fullmatch(text)
    return found is not None and all(int(part or 0) <= _U64_MAX for part in found.groups())


def parse_id(message_id: str) -> tuple[int, int]:
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq or 0)


class Bus(ABC):
    """Async message bus. Every method may raise `BusUnavailable`."""

    # -- streams --
    @abstractmethod
    async def publish(
        self, stream: str, payload: str, *, order_key: str | None = None, ttl_s: int | None = None
    ) -> str:
        """Append one entry and return its id. With `order_key`, also queue the id on that key's
        order list (atomically) so consumers run entries of one key strictly in arrival order.
        With `ttl_s`, the whole stream expires that long after its last write."""

    @abstractmethod
    async def publish_many(
        self, stream: str, payloads: Sequence[str], *, ttl_s: int | None = None
    ) -> list[str]:
        """Append several entries in one round trip (token bursts)."""

    @abstractmethod
    async def unfinished(self, stream: str, order_key: str) -> int:
        """How many entries under `order_key` are accepted and not yet completed."""

    @abstractmethod
    async def put_value(self, key: str, value: str, *, ttl_s: int | None = None) -> None:
        """A small value under `key` (agent cards)."""

    @abstractmethod
    async def get_value(self, key: str) -> str | None:
        """The value under `key`, or None."""

    @abstractmethod
    async def publish_batch(self, publications: Sequence[Publication]) -> None:
        """Append to several streams in one round trip, each publication's entries in order
        (not atomic: a worker's token writes for all its runs at once)."""

    @abstractmethod
    async def publish_after(
        self,
        first: Publication,
        stream: str,
        payload: str,
        *,
        order_key: str,
        token: str | None = None,
        token_ttl_s: int = 86_400,
        durable_timeout_ms: int | None = None,
        only_if_idle: bool = False,
        index: Sequence[IndexUpdate] = (),
    ) -> tuple[list[str], str]:
        """Atomically append `first`'s entries, then one entry to `stream` ordered under
        `order_key`; return both ids. With `only_if_idle`, raise `ConversationBusy` instead while
        an earlier entry under `order_key` is unfinished (a retry of an accepted one still returns
        its ids). The gateway announces a message and enqueues it this way,
        so the announcement is never published without the message, nor after its replies.
        With `token`, a second call with the same token (within `token_ttl_s`) publishes nothing
        and returns the first call's ids: retrying an acceptance is safe. With
        `durable_timeout_ms`, return only once the store has the write on disk (else raise
        `BusUnavailable`: the outcome is unknown, and retrying with the token is safe).
        `index` is applied with the entry (not again for a repeated token)."""

    @abstractmethod
    async def tally(self, key: str) -> dict[str, str]:
        """The fields of a `Tally`'s hash ({} when missing or expired)."""

    @abstractmethod
    async def ranked(
        self, key: str, *, below: float | None = None, limit: int = 50
    ) -> list[tuple[str, float]]:
        """A `Ranking`'s members, highest score first, only scores below `below` when given."""

    @abstractmethod
    async def ranked_count(self, key: str) -> int:
        """How many members the sorted set `key` has (0 when missing)."""

    @abstractmethod
    async def read(
        self, stream: str, after: str = START, *, count: int = 500, block_ms: int | None = None
    ) -> list[BusMessage]:
        """Entries after cursor `after` (exclusive; `LATEST` for only new ones). With `block_ms`,
        wait up to that long for the first entry instead of returning an empty list at once."""

    @abstractmethod
    async def read_many(
        self, cursors: Mapping[str, str], *, count: int = 500, block_ms: int | None = None
    ) -> dict[str, list[BusMessage]]:
        """`read` over several streams in one call: entries after each stream's cursor (only
        streams that have some). With `block_ms`, wait up to that long for the first entry in any."""

    @abstractmethod
    async def last_id(self, stream: str) -> str:
        """The id of the newest entry, or START for an empty or missing stream."""

    @abstractmethod
    async def exists(self, stream: str) -> bool:
        """Whether the stream exists (an empty stream with a consumer group does)."""

    @abstractmethod
    async def length(self, stream: str) -> int:
        """Number of entries in the stream (0 when missing)."""

    @abstractmethod
    async def delete(self, stream: str, ids: Sequence[str]) -> int:
        """Remove entries by id; return how many existed."""

    @abstractmethod
    async def streams(self, prefix: str) -> list[str]:
        """Names of existing streams starting with `prefix`, sorted."""

    # -- consumer groups --
    @abstractmethod
    async def ensure_group(self, stream: str, group: str) -> None:
        """Create the group (and the stream) if missing; the group starts at the beginning."""

    @abstractmethod
    async def consume(
        self, stream: str, group: str, consumer: str, *, count: int, block_ms: int
    ) -> list[BusMessage]:
        """New entries for this consumer; they stay pending until `complete`. Each delivery
        counts towards the entry's delivery count."""

    @abstractmethod
    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[BusMessage]:
        """Take over pending entries idle for at least `min_idle_ms` (their consumer died or
        froze); each take-over counts as one more delivery."""

    @abstractmethod
    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> list[str]:
        """Renew the lease on pending entries this consumer still holds. Never takes an entry
        from another consumer: returns the ids this consumer has lost (taken over, or acked)."""

    @abstractmethod
    async def release(
        self, stream: str, group: str, consumer: str, ids: Sequence[str], *, idle_ms: int
    ) -> None:
        """Hand entries this consumer holds back: mark them idle for `idle_ms` so another
        consumer reclaims them now. Entries held by others are left alone."""

    @abstractmethod
    async def prune_consumers(self, stream: str, group: str, *, idle_ms: int) -> list[str]:
        """Forget consumers that hold nothing and were not seen for `idle_ms` (workers long gone);
        return their names."""

    @abstractmethod
    async def queue_health(self, stream: str, group: str) -> QueueHealth:
        """Backlog, in-flight entries and consumers of `group` on `stream` (all zero when missing)."""

    @abstractmethod
    async def admit(
        self,
        stream: str,
        group: str,
        consumer: str,
        message_id: str,
        *,
        order_key: str,
        token: str,
        max_deliveries: int,
    ) -> Admission:
        """In one round trip, in this order: "lost" unless `consumer` holds the entry; "done"
        when an entry carrying `token` was completed before (de-duplication); "dead" when it was
        delivered more than `max_deliveries` times; "wait" while an earlier entry of `order_key`
        is unfinished; else "run"."""

    @abstractmethod
    async def complete(
        self,
        stream: str,
        group: str,
        consumer: str,
        message_id: str,
        *,
        order_key: str | None = None,
        done_token: str | None = None,
        done_ttl_s: int = 86_400,
        publish: Sequence[Publication] = (),
        park: Parking | None = None,
    ) -> Completion:
        """Fenced completion, atomically: when `consumer` still holds the entry and no entry
        carrying `done_token` completed before, append `publish` (a run's last events), remember
        `done_token`, ack the entry and drop it from its order list ("ok"). When it completed
        before, only ack and drop what this consumer holds ("duplicate": also the answer to a
        retried completion whose first attempt went through). When another consumer holds it and
        its outcome is not published yet, do nothing at all ("lost"). So a run's final events are
        published at most once, however late a stale worker or a retried call arrives.
        With `park`: also store its record and due entry, and keep the entry on its order list."""

    @abstractmethod
    async def decide(
        self,
        record_key: str,
        call_id: str,
        decision: str,
        *,
        event: Publication,
        order_key: str,
        inbox: str,
        due_key: str,
        due_member: str,
    ) -> tuple[Verdict, str | None]:
        """Record `decision` (a `DecisionRecord` in JSON) for a call of the parked run at
        `record_key` and publish `event` (its `approval_resolved`), atomically; once every call is
        decided, enqueue the record's resume entry in `inbox` at the head of `order_key`'s order
        and drop `due_member` from `due_key`. See `Verdict`; for "decided" the second value is the
        earlier decision, for "resumed" the resume entry's id."""

    @abstractmethod
    async def due(self, due_key: str, now: float, *, count: int = 100) -> list[str]:
        """Members of `due_key` scored at or before `now` (expired approvals)."""

    # -- lifecycle --
    async def durability_problem(self) -> str | None:
        """Why `durable_timeout_ms` cannot be honoured by this store, or None when it can."""
        return "the in-memory bus keeps nothing on disk"

    @abstractmethod
    async def ping(self) -> None:
        """Raise `BusUnavailable` when the store is unreachable."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
