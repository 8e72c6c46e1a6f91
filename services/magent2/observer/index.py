"""The observer's index, written with every accepted message (inside `deliver()`'s atomic publish):
per conversation a hash of counters (`Keys.conversation`), and one sorted set of conversations by
their last message (`Keys.conversations`), both bounded in size and TTL.

Hash fields: `messages`, `created_at`, `last_activity`, `edge:<sender>><recipient>` (messages on
that edge), `parent`, and `child:<id>` for each conversation started from this one."""

from __future__ import annotations

import re

from magent2.bus import Keys
from magent2.bus.api import IndexUpdate, Ranking, Tally
from magent2.contracts import CONVERSATION_ID_PATTERN, MessageEnvelope

PARENT = "parent_conversation_id"  # envelope metadata: the conversation this one was started from
EDGE, CHILD = "edge:", "child:"
_CONVERSATION_ID = re.compile(CONVERSATION_ID_PATTERN)


class ObserverIndex:
    def __init__(self, keys: Keys, *, keep: int, ttl_s: int | None) -> None:
        self.keys, self.keep, self.ttl_s = keys, keep, ttl_s

    def updates(self, envelope: MessageEnvelope) -> list[IndexUpdate]:
        conversation = envelope.conversation_id
        at = envelope.created_at.isoformat()
        fields = {"last_activity": at}
        parent = envelope.metadata.get(PARENT)
        updates: list[IndexUpdate] = []
        if isinstance(parent, str) and parent != conversation and _CONVERSATION_ID.fullmatch(parent):
            fields["parent"] = parent
            updates.append(
                Tally(self.keys.conversation(parent), fields={CHILD + conversation: at}, ttl_s=self.ttl_s)
            )
        edge = f"{EDGE}{envelope.sender}>{envelope.recipient}"
        updates += [
            Tally(
                self.keys.conversation(conversation),
                increments={"messages": 1, edge: 1},
                fields=fields,
                defaults={"created_at": at},
                ttl_s=self.ttl_s,
            ),
            Ranking(
                self.keys.conversations(),
                conversation,
                envelope.created_at.timestamp() * 1000,
                keep=self.keep,
                ttl_s=self.ttl_s,
            ),
        ]
        return updates
