"""Parse a whole event-stream body (the in-process tests read it at once)."""

import json
from typing import Any


def parse(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) for each event; comment lines (heartbeats) are skipped."""
    events = []
    for block in body.strip("\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if not line.startswith(":"))
        if not fields:
            continue  # a heartbeat alone
        events.append((fields["event"], json.loads(fields["data"])))
    return events
