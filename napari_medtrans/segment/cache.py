"""An in-memory cache of SAM2 image embeddings, so that prompting the same slices again is instant.

Entries are keyed by ``(volume key, slice)`` where the volume key is ``(content hash of the voxels, model
identity, preprocessing settings)``: a different image, model, window or input size never reuses an embedding.
Embeddings are kept on the CPU (GPU memory is released after each job) and the least recently used ones are
dropped once the cache holds more than ``max_bytes``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["EmbeddingCache", "tensor_bytes"]

#: Default size limit: about 50 slices of a 1024-pixel model, or 500 slices at 512 pixels.
DEFAULT_MAX_BYTES = 1 << 30


def tensor_bytes(obj: Any) -> int:
    """Bytes held by the tensors in a (nested) dict, list or tuple."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


class EmbeddingCache:
    """Least-recently-used store of per-slice embeddings, bounded in bytes; safe to share between threads.

    Parameters
    ----------
    max_bytes : int
        Size limit. 0 disables caching (every lookup misses).

    Attributes
    ----------
    hits, misses : int
        Lookups that found / did not find an entry since creation (or :meth:`clear`).
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        if int(max_bytes) < 0:
            raise ValueError(f'Argument "max_bytes" must be >= 0, got {max_bytes!r}.')
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        return self._bytes

    def get(self, key: Hashable) -> Any | None:
        """The entry for ``key`` (marked as recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value``; older entries are dropped while the cache is over its limit."""
        size = tensor_bytes(value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def drop(self, volume_key: Hashable) -> int:
        """Remove every slice of one volume key; returns how many entries went."""
        with self._lock:
            keys = [k for k in self._items if isinstance(k, tuple) and k and k[0] == volume_key]
            for k in keys:
                self._bytes -= self._items.pop(k)[1]
            return len(keys)

    def clear(self) -> None:
        """Forget everything and reset the counters."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = 0
            self.misses = 0
