"""Agent desk: the human side of a handoff. `routing` is the pure queue/assignment logic (no web)."""
