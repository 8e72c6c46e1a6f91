"""The Bus API: append-only streams, blocking readers, consumer groups with leases.

Two implementations pass one contract suite: `RedisStreamsBus` (production, shared by replicas)
and `InMemoryBus` (local mode and tests). Cursors are Redis stream ids ("<ms>-<seq>") in both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

START = "0-0"  # read from the beginning of a stream
LATEST = "$"  # read only entries added after the call


class BusUnavailable(RuntimeError):
    """The backing store cannot be reached; the operation may be retried."""


@dataclass(frozen=True, slots=True)
class BusMessage:
    id: str
    payload: str


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

    @property
    def inbox_prefix(self) -> str:
        return f"{self.prefix}chat:"


Admission = Literal["run", "wait", "done"]


@dataclass(frozen=True, slots=True)
class Publication:
    """Entries to append to `stream` as part of another operation."""

    stream: str
    payloads: Sequence[str]
    ttl_s: int | None = None


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
    async def publish_after(
        self, first: Publication, stream: str, payload: str, *, order_key: str
    ) -> tuple[list[str], str]:
        """Atomically append `first`'s entries, then one entry to `stream` ordered under
        `order_key`; return both ids. The gateway announces a message and enqueues it this way,
        so the announcement is never published without the message, nor after its replies."""

    @abstractmethod
    async def read(
        self, stream: str, after: str = START, *, count: int = 500, block_ms: int | None = None
    ) -> list[BusMessage]:
        """Entries after cursor `after` (exclusive; `LATEST` for only new ones). With `block_ms`,
        wait up to that long for the first entry instead of returning an empty list at once."""

    @abstractmethod
    async def last_id(self, stream: str) -> str:
        """The id of the newest entry, or START for an empty or missing stream."""

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
        """New entries for this consumer; they stay pending until `complete`."""

    @abstractmethod
    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[BusMessage]:
        """Take over pending entries idle for at least `min_idle_ms` (their consumer died)."""

    @abstractmethod
    async def touch(self, stream: str, group: str, consumer: str, ids: Sequence[str]) -> None:
        """Renew the lease on pending entries this consumer still works on."""

    @abstractmethod
    async def release(
        self, stream: str, group: str, consumer: str, ids: Sequence[str], *, idle_ms: int
    ) -> None:
        """Hand entries back: mark them idle for `idle_ms` so another consumer reclaims them now."""

    @abstractmethod
    async def prune_consumers(self, stream: str, group: str, *, idle_ms: int) -> list[str]:
        """Forget consumers that hold nothing and were not seen for `idle_ms` (workers long gone);
        return their names."""

    @abstractmethod
    async def admit(self, stream: str, order_key: str, message_id: str, token: str) -> Admission:
        """In one round trip: "done" when an entry carrying `token` was completed before
        (de-duplication), "wait" while an earlier entry of `order_key` is unfinished, else "run"."""

    @abstractmethod
    async def complete(
        self,
        stream: str,
        group: str,
        message_id: str,
        *,
        order_key: str | None = None,
        done_token: str | None = None,
        done_ttl_s: int = 86_400,
        publish: Publication | None = None,
    ) -> None:
        """Atomically: append `publish` (a run's last events), ack the entry, drop it from its
        order list and remember `done_token`. Either all of it happens or none."""

    # -- lifecycle --
    @abstractmethod
    async def ping(self) -> None:
        """Raise `BusUnavailable` when the store is unreachable."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
