"""`magent2 tui`: a terminal UI over the gateway's HTTP/SSE API (install the `magent2[tui]` extra)."""
