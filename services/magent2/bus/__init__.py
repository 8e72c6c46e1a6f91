from magent2.bus.api import (
    LATEST,
    START,
    Admission,
    Bus,
    BusMessage,
    BusUnavailable,
    ConversationBusy,
    Keys,
    Publication,
)
from magent2.bus.memory import InMemoryBus
from magent2.bus.redis import RedisStreamsBus

__all__ = [
    "LATEST",
    "START",
    "Admission",
    "Bus",
    "BusMessage",
    "BusUnavailable",
    "ConversationBusy",
    "InMemoryBus",
    "Keys",
    "Publication",
    "RedisStreamsBus",
]
