from magent2.bus.api import GROUP
from magent2.worker.runner import EchoRunner, RunFailed, Runner
from magent2.worker.worker import Worker

__all__ = ["GROUP", "EchoRunner", "RunFailed", "Runner", "Worker"]
