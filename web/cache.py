"""One render shared by every client that asks within a short time (the status JSON, the page's model).

Fifty browsers and scripts polling the status at once would otherwise each build the daemon's snapshot, hash it
and serialise it; under the GIL they queue behind each other.  A value is kept ``ttl_s`` (a quarter second by
default, far below anyone's poll interval) and built by one thread while the others wait for it (single
flight).  Every action submitted through the web clears the cache, so a page after a form shows the result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class RenderCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.builds = 0  # how many times a value was built (for tests and the bench)
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._building: dict[Hashable, threading.Lock] = {}
        self._generation = 0

    def _fresh(self, key: Hashable, ttl_s: float) -> tuple[bool, Any]:
        hit = self._entries.get(key)
        if hit is not None and self.clock() - hit[0] < ttl_s:
            return True, hit[1]
        return False, None

    def get(self, key: Hashable, build: Callable[[], T], ttl_s: float) -> T:
        """The value for ``key`` if built less than ``ttl_s`` ago, else ``build()`` (once, however many ask)."""
        if ttl_s <= 0:
            with self._lock:
                self.builds += 1
            return build()
        with self._lock:
            ok, value = self._fresh(key, ttl_s)
            if ok:
                return value  # type: ignore[no-any-return]
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                ok, value = self._fresh(key, ttl_s)  # built by another thread while this one waited
                if ok:
                    return value  # type: ignore[no-any-return]
                generation = self._generation
            started = self.clock()  # the value is as old as the data it was built from
            value = build()  # an exception caches nothing and reaches the caller
            with self._lock:
                self.builds += 1
                if generation == self._generation:  # not cleared meanwhile (an action changed things)
                    self._entries[key] = (started, value)
            return value  # type: ignore[no-any-return]

    def entry(self, key: Hashable) -> tuple[float, Any, int] | None:
        """(when it was built, the value, the generation) for ``key``, however old; None once cleared.  The
        generation counts the clears: a value kept elsewhere from an earlier generation is from before an
        action.  Never builds."""
        with self._lock:
            e = self._entries.get(key)
            return None if e is None else (e[0], e[1], self._generation)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1
