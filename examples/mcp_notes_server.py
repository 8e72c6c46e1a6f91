"""A small MCP server for magent2's examples and tests (stdio): a notes pad, plus a tool that
kills the server, to show that a crashed server is restarted and the agent keeps going.

    mcpServers: [{name: notes, command: [python3, examples/mcp_notes_server.py]}]
    python3 examples/mcp_notes_server.py --http 8765   # streamable HTTP at http://127.0.0.1:8765/mcp
"""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("magent2-notes")
notes: list[str] = []


@server.tool()
def add_note(text: str) -> str:
    """Remember a note for the rest of this server's life."""
    notes.append(text)
    return f"{len(notes)} note(s)"


@server.tool()
def list_notes() -> list[str]:
    """All notes, oldest first."""
    return notes


@server.tool()
def crash() -> str:
    """Exit the server process at once (for crash-recovery demos)."""
    os._exit(3)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
