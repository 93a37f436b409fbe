"""A sliding-window rate limit, in memory: at most `count` events per `seconds` per key."""

from __future__ import annotations

import collections
import threading
import time


class RateLimit:
    def __init__(self, count: int, seconds: float, clock=time.monotonic):
        self.count, self.seconds, self.clock = count, seconds, clock
        self._events: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        """Count an event of `key` and return 0, or return the seconds to wait (not counted)."""
        now = self.clock()
        with self._lock:
            events = self._events.setdefault(key, collections.deque())
            while events and events[0] <= now - self.seconds:
                events.popleft()
            if len(events) >= self.count:
                return events[0] + self.seconds - now
            events.append(now)
            if len(self._events) > 100_000:  # keys of the past (clients long gone): forget them
                self._events = {k: v for k, v in self._events.items() if v and v[-1] > now - self.seconds}
            return 0.0
