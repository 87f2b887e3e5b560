"""Loaded models kept warm between jobs: a cache keyed by model and device, with a memory
budget and least-recently-used eviction.

A worker process lives across jobs, so the second swap of the day does not load its
networks again. What does not fit the budget evicts the models used longest ago; a model
larger than the whole budget is loaded, used and not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from vfxmocap.core.log import get_logger

log = get_logger("models.cache")
T = TypeVar("T")


@dataclass
class _Entry:
    value: Any
    size_gb: float


class ModelCache:
    def __init__(self, budget_gb: float) -> None:
        self.budget_gb = budget_gb
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    @property
    def used_gb(self) -> float:
        return sum(e.size_gb for e in self._entries.values())

    def get(self, key: Hashable, load: Callable[[], T], size_gb: float) -> T:
        """The cached value for `key`, or `load()` it (evicting LRU entries to fit)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                value: T = entry.value
                return value
        self.misses += 1
        loaded = load()  # outside the lock: loading a model takes seconds
        with self._lock:
            if size_gb > self.budget_gb:
                log.info("%s (%.2f GB) exceeds the model cache budget; not kept", key, size_gb)
                return loaded
            while self._entries and self.used_gb + size_gb > self.budget_gb:
                old, _ = self._entries.popitem(last=False)
                self.evictions += 1
                log.info("model cache: evicted %s", old)
            self._entries[key] = _Entry(loaded, size_gb)
        return loaded

    def cached(self) -> list[Hashable]:
        """Keys of the models kept, least recently used first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache: ModelCache | None = None


def model_cache() -> ModelCache:
    """This process's cache, sized by `model_cache_gb` in the settings."""
    global _cache
    if _cache is None:
        from vfxmocap.core.config import get_settings

        _cache = ModelCache(get_settings().model_cache_gb)
    return _cache
