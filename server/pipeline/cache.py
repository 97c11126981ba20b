"""Suggestion cache keyed by a content hash of what the provider sees.

Two tiers: an in-memory LRU (microseconds) in front of a size-bounded diskcache in the user cache
directory, so suggestions survive restarts (as Continue's SQLite cache does). The disk tier is
optional and any failure of it degrades to memory-only.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# How much context around the cursor determines a suggestion; keeps keys stable when far-away
# text changes, which is what makes the cache hit while the user works elsewhere in the file.
KEY_PREFIX_CHARS = 2000
KEY_SUFFIX_CHARS = 500


def cache_key(provider: str, model: str | None, prefix: str, suffix: str) -> str:
    # Each part followed by \x1f, hashed in one update (the same digest as one update per part).
    parts = (provider, model or "", prefix[-KEY_PREFIX_CHARS:], "\x00", suffix[:KEY_SUFFIX_CHARS], "")
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class SuggestionCache:
    def __init__(self, entries: int = 512, disk_dir: Path | None = None, disk_mb: int = 64) -> None:
        self._entries = max(1, entries)
        self._memory: OrderedDict[str, Any] = OrderedDict()
        self._disk: Any = None
        self.hits = 0
        self.misses = 0
        if disk_dir is not None:
            try:
                import diskcache

                disk_dir.mkdir(parents=True, exist_ok=True)
                self._disk = diskcache.Cache(str(disk_dir), size_limit=disk_mb * 1024 * 1024, eviction_policy="least-recently-used")
            except Exception as exc:  # unwritable cache dir, corrupt db: memory-only
                log.warning("suggestion disk cache unavailable (%s); using memory only", exc)
                self._disk = None

    def get(self, key: str) -> Any | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += 1
            return self._memory[key]
        if self._disk is not None:
            try:
                value = self._disk.get(key)
            except Exception:
                value = None
            if value is not None:
                self._put_memory(key, value)
                self.hits += 1
                return value
        self.misses += 1
        return None

    def put(self, key: str, value: Any) -> None:
        self._put_memory(key, value)
        if self._disk is not None:
            try:
                self._disk.set(key, value)
            except Exception as exc:
                log.debug("disk cache write failed: %s", exc)

    def _put_memory(self, key: str, value: Any) -> None:
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > self._entries:
            self._memory.popitem(last=False)

    def __len__(self) -> int:
        return len(self._memory)

    def close(self) -> None:
        if self._disk is not None:
            try:
                self._disk.close()
            except Exception:
                pass
