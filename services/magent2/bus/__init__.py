from magent2.bus.api import LATEST, START, Bus, BusMessage, BusUnavailable, Keys
from magent2.bus.memory import InMemoryBus
from magent2.bus.redis import RedisStreamsBus

__all__ = ["LATEST", "START", "Bus", "BusMessage", "BusUnavailable", "InMemoryBus", "Keys", "RedisStreamsBus"]
