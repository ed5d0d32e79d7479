"""Domain rules: pure functions and values, no I/O (the conversation record, inbound parsing, splitting, liveness)."""
