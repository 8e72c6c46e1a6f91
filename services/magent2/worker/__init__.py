from magent2.worker.runner import EchoRunner, RunFailed, Runner
from magent2.worker.worker import GROUP, Worker

__all__ = ["GROUP", "EchoRunner", "RunFailed", "Runner", "Worker"]
