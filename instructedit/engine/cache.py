"""Results that depend only on the image, the model and a few settings, kept for the next edit of that image.

People edit one image many times (other instructions, parameter sweeps, turns). :class:`EditCache` keeps, bounded
in bytes and least-recently-used out, what such edits would recompute: DDIM inversion trajectories keyed by a
content hash of the clean latents, the UNet, the conditioning and the schedule. A trajectory inverted to a higher
``strength`` serves every lower one (its first steps are the same computation).
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from typing import Any

import torch


def digest(*parts: Any) -> str:
    """A content hash of tensors (their dtype, shape and bytes) and plain values."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            t = part.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        else:
            h.update(repr(part).encode())
        h.update(b"|")
    return h.hexdigest()


class EditCache:
    """A byte-bounded LRU of tensor lists (``max_bytes`` 0 turns it off); safe to share between threads."""

    def __init__(self, max_bytes: int = 512 * 2**20) -> None:
        self.max_bytes, self.bytes, self.hits, self.misses = int(max_bytes), 0, 0, 0
        self._items: OrderedDict[str, tuple[list[torch.Tensor], int, int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def trajectory(self, key: str, steps: int, owner: object) -> list[torch.Tensor]:
        """Up to the first ``steps`` latents of the trajectory stored under ``key`` by ``owner`` (the model that
        computed it: a key never serves another model that reuses a freed one's id); ``[]`` when none is. A
        shorter one is a prefix to go on from."""
        with self._lock:
            item = self._items.get(key)
            if item is None or item[3]() is not owner:
                self.misses += 1
                return []
            self._items.move_to_end(key)
            self.hits += 1
            return list(item[0][:steps])

    def store(self, key: str, trajectory: list[torch.Tensor], owner: object) -> None:
        size = sum(t.element_size() * t.numel() for t in trajectory)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                if old[1] >= len(trajectory) and old[3]() is owner:  # keep the longer one
                    self._items[key] = old
                    return
                self.bytes -= old[2]
            self._items[key] = ([t.detach() for t in trajectory], len(trajectory), size, weakref.ref(owner))
            self.bytes += size
            while self.bytes > self.max_bytes and self._items:
                _, (_, _, freed, _) = self._items.popitem(last=False)
                self.bytes -= freed

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0
