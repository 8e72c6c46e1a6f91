"""Run control: stopping runs on request and what a second message does (`onNewMessage`)."""
