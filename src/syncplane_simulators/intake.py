"""What a monitoring simulator (Datadog, Splunk HEC, Elastic) keeps of the events it accepted.

Tests and `syncplane bench events` read it to see "exactly once": every accepted event's Syncplane id, in
arrival order, and how many ids came more than once. The bodies are kept too, but only the last `keep`, so a
100,000-event benchmark does not hold them all. `GET <simulator>/_control/received?limit=N` answers
`{"count", "distinct", "duplicates", "ids", "events"}` (the last N bodies, default 100).
"""

from __future__ import annotations

import threading
from collections import deque


class ReceivedEvents:
    def __init__(self, keep: int = 1000) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.ids: list[str] = []
            self._seen: set[str] = set()
            self.duplicates = 0
            self.bodies: deque = deque(maxlen=self._keep)

    def add(self, event_id: str, body: dict) -> None:
        with self._lock:
            if event_id in self._seen:
                self.duplicates += 1
            self._seen.add(event_id)
            self.ids.append(event_id)
            self.bodies.append(body)

    def __len__(self) -> int:
        return len(self.ids)

    def summary(self, limit: int = 100) -> dict:
        with self._lock:
            return {
                "count": len(self.ids),
                "distinct": len(self._seen),
                "duplicates": self.duplicates,
                "ids": list(self.ids),
                "events": list(self.bodies)[-limit:] if limit > 0 else [],
            }
