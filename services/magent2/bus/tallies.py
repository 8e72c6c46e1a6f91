"""The in-memory bus's hashes and sorted sets (`Tally`, `Ranking`, the approvals due), expiring as
Redis keys do."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from magent2.bus.api import IndexUpdate, Ranking

_SWEEP_EVERY = 1_000  # updates between sweeps of expired keys


@dataclass
class _Entry:
    expires: float | None
    hash: dict[str, str] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)


class Tallies:
    def __init__(self) -> None:
        self._keys: dict[str, _Entry] = {}
        self._updates = 0

    def _live(self, key: str) -> _Entry | None:
        entry = self._keys.get(key)
        if entry is not None and entry.expires is not None and entry.expires <= time.monotonic():
            del self._keys[key]
            return None
        return entry

    def apply(self, updates: Sequence[IndexUpdate]) -> None:
        now = time.monotonic()
        for update in updates:
            entry = self._live(update.key) or self._keys.setdefault(update.key, _Entry(None))
            if isinstance(update, Ranking):
                entry.scores[update.member] = update.score
                if len(entry.scores) > update.keep:
                    kept = sorted(entry.scores.items(), key=lambda item: item[1])[-update.keep :]
                    entry.scores = dict(kept)
            else:
                for name, by in update.increments.items():
                    entry.hash[name] = str(int(entry.hash.get(name, "0")) + by)
                entry.hash.update(update.fields)
                for name, value in update.defaults.items():
                    entry.hash.setdefault(name, value)
            if update.ttl_s is not None:
                entry.expires = now + update.ttl_s
        self._updates += 1
        if self._updates % _SWEEP_EVERY == 0:
            for key in list(self._keys):
                self._live(key)

    def scores(self, key: str) -> dict[str, float]:
        """The sorted set `key` (created empty), to change in place."""
        entry = self._live(key) or self._keys.setdefault(key, _Entry(None))
        return entry.scores

    def hash(self, key: str) -> dict[str, str]:
        entry = self._live(key)
        return dict(entry.hash) if entry else {}

    def ranked(self, key: str, below: float | None, limit: int) -> list[tuple[str, float]]:
        entry = self._live(key)
        if entry is None:
            return []
        found = [(m, s) for m, s in entry.scores.items() if below is None or s < below]
        return sorted(found, key=lambda item: item[1], reverse=True)[:limit]

    def count(self, key: str) -> int:
        entry = self._live(key)
        return len(entry.scores) if entry else 0
