"""The signature cache, as the real proxy keeps it: keyed by chat id, a TTL, and a maximum entry count.

A busy node forgets sooner than the TTL because the oldest entries are evicted first (SPEC §2).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

__all__ = ["SignatureCache", "CachedChat"]


@dataclass(frozen=True)
class CachedChat:
    model: str
    text: str
    stored_at: float
    rogue: bool = False  # signed by a key the report does not name (fault wrong_signing_key)


class SignatureCache:
    def __init__(self, *, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[str, CachedChat] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, chat_id: str, model: str, text: str, *, rogue: bool = False) -> None:
        with self._lock:
            self._items[chat_id] = CachedChat(model, text, self._clock(), rogue)
            self._items.move_to_end(chat_id)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def get(self, chat_id: str) -> CachedChat | None:
        with self._lock:
            item = self._items.get(chat_id)
            if item is None:
                return None
            if self._clock() - item.stored_at >= self.ttl:
                del self._items[chat_id]
                return None
            return item

    def __len__(self) -> int:
        return len(self._items)
