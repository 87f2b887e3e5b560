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
from concurrent.futures import Future
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
        # Keys being loaded now: a second miss waits for that load instead of repeating it
        # (two streams starting together must not load a 500 MB model twice).
        self._loading: dict[Hashable, Future[Any]] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    @property
    def used_gb(self) -> float:
        return sum(e.size_gb for e in self._entries.values())

    def get(self, key: Hashable, load: Callable[[], T], size_gb: float) -> T:
        """The cached value for `key`, or `load()` it once (evicting LRU entries to fit);
        misses on other keys load meanwhile, in their own threads."""
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    value: T = entry.value
                    return value
                pending = self._loading.get(key)
                if pending is None:
                    self.misses += 1
                    self._loading[key] = Future()
                    break
            if pending.exception() is None:  # waits for the thread that loads it
                with self._lock:
                    self.hits += 1
                waited: T = pending.result()
                return waited
            # That load failed: this caller tries itself, and gets its own error if any.
        return self._load(key, load, size_gb)

    def _load(self, key: Hashable, load: Callable[[], T], size_gb: float) -> T:
        """Load `key` (outside the lock: it takes seconds) and hand it to the waiters."""
        try:
            loaded = load()
        except BaseException as exc:
            with self._lock:
                self._loading.pop(key).set_exception(exc)
            raise
        with self._lock:
            self._keep(key, loaded, size_gb)
            self._loading.pop(key).set_result(loaded)
        return loaded

    def _keep(self, key: Hashable, value: Any, size_gb: float) -> None:
        """Store `value` under `key`, evicting the least recently used to fit the budget."""
        if size_gb > self.budget_gb:
            log.info("%s (%.2f GB) exceeds the model cache budget; not kept", key, size_gb)
            return
        while self._entries and self.used_gb + size_gb > self.budget_gb:
            old, _ = self._entries.popitem(last=False)
            self.evictions += 1
            log.info("model cache: evicted %s", old)
        self._entries[key] = _Entry(value, size_gb)

    def cached(self) -> list[Hashable]:
        """Keys of the models kept, least recently used first."""
        with self._lock:
            return list(self._entries)

    def discard(self, key: Hashable) -> bool:
        """Drop `key` (its memory goes with the last reference); False when not kept."""
        with self._lock:
            return self._entries.pop(key, None) is not None

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
