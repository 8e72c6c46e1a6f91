from magent2.client.cli import main

__all__ = ["main"]
