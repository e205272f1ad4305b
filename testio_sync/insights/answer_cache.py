"""Answers kept while the mirror's data stays the same: one question asked by many
assistants, or again and again by one dashboard, is computed once per change.

An answer is kept with the store's data version (``store/data_version``) it was
computed on; any commit to the mirror changes the version, and answers of another
version are dropped, so a kept answer is always the one a fresh computation would
give. The oldest answers go first past ``max_entries``; answers are copied in and
out, so no caller can change a kept one.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

from testio_sync.dates import utc_now
from testio_sync.store.data_version import data_version

T = TypeVar("T")
MAX_ENTRIES = 128


class AnswerCache:
    """A bounded, thread-safe map from question to answer, for one data version."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._version: Hashable | None = None
        self._answers: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def answer(self, question: Hashable, compute: Callable[[], T]) -> T:
        """``compute()``'s answer to ``question`` on the data as it is now."""
        with data_version() as version:
            if version is None:
                return compute()
            # Defaults such as "up to today" make the day part of every version.
            version = (version, utc_now().date())
            with self._lock:
                if version != self._version:
                    self._version = version
                    self._answers.clear()
                kept = self._answers.get(question)
                if kept is not None:
                    self._answers.move_to_end(question)
                    self.hits += 1
                    return copy.deepcopy(kept)  # type: ignore[return-value]
                self.misses += 1
            fresh = compute()
            with self._lock:
                if version == self._version:  # else the data moved on meanwhile
                    self._answers[question] = copy.deepcopy(fresh)
                    while len(self._answers) > self.max_entries:
                        self._answers.popitem(last=False)
            return fresh
