"""Thread-safe request counters that tests read like a dict (missing names read as 0)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping


class Counters(Mapping[str, int]):
    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self._lock = threading.Lock()

    def incr(self, name: str, n: int = 1) -> int:
        with self._lock:
            value = self._values.get(name, 0) + n
            self._values[name] = value
            return value

    def set_max(self, name: str, value: int) -> None:
        """Keep the highest value seen (e.g. peak concurrent CDN streams)."""
        with self._lock:
            self._values[name] = max(self._values.get(name, 0), value)

    def reset(self) -> None:
        with self._lock:
            self._values.clear()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self.snapshot())

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def __repr__(self) -> str:
        return f"Counters({self.snapshot()!r})"
