"""The observer: which conversations exist, who talked to whom, how each agent's queue is doing."""
