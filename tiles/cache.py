"""An in-process, size-bounded LRU of expensive tiles, keyed by ETag.

Low-zoom tiles of dense layers hold every feature and take hundreds of milliseconds to build; the map asks
for the same few of them on every page view. The ETag includes the layer's generation, so a re-imported
layer never serves a cached tile of its old table, and nothing needs invalidating.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class TileCache:
    """Thread-safe LRU of tile bodies, at most ``max_bytes`` in total (0 disables it)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._tiles: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, etag: str) -> bytes | None:
        """The cached tile with this ETag, if any."""
        with self._lock:
            body = self._tiles.get(etag)
            if body is not None:
                self._tiles.move_to_end(etag)
            return body

    def put(self, etag: str, body: bytes) -> None:
        """Keep a tile, evicting the least recently used ones beyond the size bound."""
        if len(body) > self.max_bytes // 4:  # one huge tile must not flush everything else
            return
        with self._lock:
            if etag in self._tiles:
                return
            self._tiles[etag] = body
            self._size += len(body)
            while self._size > self.max_bytes:
                _, evicted = self._tiles.popitem(last=False)
                self._size -= len(evicted)

    @property
    def size_bytes(self) -> int:
        return self._size
