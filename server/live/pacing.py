"""A room's pace under load, without I/O: its adaptive tick, and the chat sample its viewers are shown.

The hub (server.live.hub) measures each flush and asks `Tick` for the next tick's width; it asks
`ChatSample` which of a flush's viewer chat messages the room's non-staff viewers are shown.
"""

from __future__ import annotations

SMOOTHING = 0.2  # the newest flush's weight in the running share of the tick that flushes take
WIDEN_ABOVE = 0.75  # a larger share does not fit: the rest of the tick is the process's other work
NARROW_BELOW = 0.35  # a smaller share fits easily (WIDEN_ABOVE / WIDEN is above it: no back and forth)
WIDEN = 1.5  # a tick that does not fit grows by this factor, and shrinks by it once it fits easily
NARROW_AFTER = 10  # flushes at one width before it may narrow


class Tick:
    """A room's tick, between `narrowest` and `widest`: widened while its flushes take more than WIDEN_ABOVE of it on
    average, narrowed when they take less than NARROW_BELOW (after NARROW_AFTER flushes at that width).

    A flush takes its fan-out time plus its lag (how late it started: the process was busy), counted as at most the
    whole tick; the average is a running one (SMOOTHING), so one late flush alone changes nothing.
    """

    def __init__(self, narrowest: float, widest: float) -> None:
        self.narrowest = narrowest
        self.widest = max(widest, narrowest)
        self.width = narrowest  # seconds
        self.share = 0.0  # the running average of the share of the tick a flush takes
        self._flushes = 0  # flushes at this width

    def observe(self, busy: float, lag: float) -> None:
        """One flush: `busy` seconds handing it out, started `lag` seconds after it was due."""
        self.share += SMOOTHING * (min((busy + lag) / self.width, 1.0) - self.share)
        self._flushes += 1
        if self.share > WIDEN_ABOVE and self.width < self.widest:
            self._resize(min(self.width * WIDEN, self.widest))
        elif self.share < NARROW_BELOW and self.width > self.narrowest and self._flushes >= NARROW_AFTER:
            self._resize(max(self.width / WIDEN, self.narrowest))

    def _resize(self, width: float) -> None:
        self.share *= self.width / width  # the same work is a smaller share of a wider tick
        self.width = width
        self._flushes = 0


class ChatSample:
    """How many of a room's viewer chat messages its viewers are shown: a budget of `per_second` a second (0: no
    limit), refilled continuously and carried over from flush to flush, at most one second's worth saved up."""

    def __init__(self, per_second: int, now: float) -> None:
        self.per_second = per_second
        self._budget = float(per_second)
        self._refilled = now

    def shown(self, count: int, now: float) -> list[int]:
        """Of `count` chat messages in one flush, the indexes of those shown (ascending, evenly spread)."""
        if self.per_second == 0:
            return list(range(count))
        self._budget = min(float(self.per_second), self._budget + (now - self._refilled) * self.per_second)
        self._refilled = now
        kept = min(count, int(self._budget))
        self._budget -= kept
        if kept == count:
            return list(range(count))
        return [(2 * index + 1) * count // (2 * kept) for index in range(kept)]
