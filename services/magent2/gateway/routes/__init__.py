"""One router per resource; `gateway/app.py` includes them all."""
