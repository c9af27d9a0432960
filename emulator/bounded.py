"""Bounded containers for tables that peers can grow (one entry per board name, per request source)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruDict(OrderedDict[K, V], Generic[K, V]):
    """A dict of at most ``maxlen`` entries: setting a new key evicts the least recently set or touched one.

    ``evicted`` counts the entries pushed out, so a table that a peer floods with new names says so.
    """

    def __init__(self, maxlen: int) -> None:
        super().__init__()
        self.maxlen = maxlen
        self.evicted = 0

    def __setitem__(self, key: K, value: V) -> None:
        if key in self:
            self.move_to_end(key)
        elif len(self) >= self.maxlen:
            self.popitem(last=False)
            self.evicted += 1
        super().__setitem__(key, value)

    def touch(self, key: K, default: V) -> V:
        """The value of ``key`` (``default`` stored first if missing), marked as most recently used."""
        if key in self:
            self.move_to_end(key)
            return self[key]
        self[key] = default
        return default
