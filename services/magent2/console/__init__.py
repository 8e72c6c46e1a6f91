"""The web console at /ui: static HTML, JS and CSS over the gateway's public HTTP API."""
