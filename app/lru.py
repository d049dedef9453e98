"""A bounded, thread-safe least-recently-used map, for the web layer's response caches.

Why one class: the API's result cache (app/api/cache.py) and the page's rendered-HTML
cache (app/pages.py) keep the same kind of table; their endpoints run both on the event
loop and in worker threads, so every access takes the lock. ``size <= 0`` keeps nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class Lru(Generic[V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[object, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: object) -> V | None:
        with self._lock:
            v = self._d.get(key)
            if v is None:
                self.misses += 1
            else:
                self._d.move_to_end(key)
                self.hits += 1
            return v

    def put(self, key: object, value: V) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)
