"""The simulated clock: follows real time at a speed factor, plus explicit jumps."""

from __future__ import annotations

import time


class SimClock:
    def __init__(self, *, speed: float = 1.0, start: float | None = None) -> None:
        self._speed = speed
        self._base_sim = time.time() if start is None else start
        self._base_real = time.monotonic()

    def now(self) -> float:
        return self._base_sim + (time.monotonic() - self._base_real) * self._speed

    def _rebase(self) -> None:
        self._base_sim = self.now()
        self._base_real = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def set_speed(self, speed: float) -> None:
        self._rebase()
        self._speed = speed

    def advance(self, seconds: float) -> None:
        self._rebase()
        self._base_sim += seconds

    def set(self, epoch: float) -> None:
        self._base_sim = epoch
        self._base_real = time.monotonic()
