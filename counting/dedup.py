"""The dedup window of one partition, in its owner's memory: the 63-bit hashes of the post
ids counted in the last ``window_ms`` (by Kafka timestamp), so that the same post sent
twice by the feed is counted once.

Only the worker assigned a partition counts it, so the check needs no Redis round trip
and costs Redis nothing: Redis keeps a copy (one small set of hashes per batch, for the
window) from which a worker taking the partition over rebuilds it (``counting.counters``).
Held as about twenty sorted ``int64`` arrays (8 bytes a hash) plus a small set for the
slice being filled: a worker holding a few million hashes spends tens of megabytes, not
the hundreds a Python set of them would take. Pure: no I/O."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

SLICES = 20


def id_hash(post_id: str) -> int:
    """A 63-bit hash of a post id (a positive int64, so Redis keeps a set of them in its
    compact intset encoding). Two ids collide with odds of about n²/2⁶⁴ for n ids in one
    partition's window."""
    return int.from_bytes(hashlib.blake2b(post_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big") >> 1


class DedupWindow:
    def __init__(self, window_ms: int):
        self.window_ms = window_ms
        self.slice_ms = max(window_ms // SLICES, 1000)
        # Closed slices: (newest arrival in it, its hashes sorted).
        self.closed: list[tuple[int, np.ndarray]] = []
        self.open: set[int] = set()
        self.open_first = self.open_newest = 0

    def __len__(self) -> int:
        return len(self.open) + sum(len(hashes) for _, hashes in self.closed)

    def contains(self, hashes: Sequence[int], now_ms: int) -> list[bool]:
        """For each hash in order, whether it is in the window."""
        self._expire(now_ms)
        batch = np.fromiter(hashes, dtype=np.int64, count=len(hashes))
        known = np.zeros(len(batch), dtype=bool)
        for _, sorted_hashes in self.closed:
            at = np.minimum(sorted_hashes.searchsorted(batch), len(sorted_hashes) - 1)
            known |= sorted_hashes[at] == batch
        return [old or h in self.open for h, old in zip(hashes, known.tolist())]

    def fresh(self, hashes: Sequence[int], now_ms: int) -> list[bool]:
        """For each hash in order, whether it is new: not in the window, nor earlier in
        ``hashes``."""
        out = []
        seen_here: set[int] = set()
        for h, known in zip(hashes, self.contains(hashes, now_ms)):
            out.append(not known and h not in seen_here)
            seen_here.add(h)
        return out

    def add(self, hashes: Iterable[int], arrived_ms: int) -> None:
        if self.open and arrived_ms - self.open_first >= self.slice_ms:
            self._close()
        if not self.open:
            self.open_first = arrived_ms
        self.open.update(hashes)
        self.open_newest = max(self.open_newest, arrived_ms)

    def _close(self) -> None:
        hashes = np.fromiter(self.open, dtype=np.int64, count=len(self.open))
        hashes.sort()
        self.closed.append((self.open_newest, hashes))
        self.open = set()
        self.open_newest = 0

    def _expire(self, now_ms: int) -> None:
        cutoff = now_ms - self.window_ms
        self.closed = [(newest, hashes) for newest, hashes in self.closed if newest >= cutoff]
        if self.open and self.open_newest < cutoff:
            self.open = set()
            self.open_newest = 0
