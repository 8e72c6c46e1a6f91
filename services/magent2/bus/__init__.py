from magent2.bus.api import LATEST, START, Admission, Bus, BusMessage, BusUnavailable, Keys, Publication
from magent2.bus.memory import InMemoryBus
from magent2.bus.redis import RedisStreamsBus

__all__ = [
    "LATEST",
    "START",
    "Admission",
    "Bus",
    "BusMessage",
    "BusUnavailable",
    "InMemoryBus",
    "Keys",
    "Publication",
    "RedisStreamsBus",
]
