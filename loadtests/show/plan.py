"""The show's timeline, shared by the load shape (who is there) and the host (when the sales run); no I/O.

    0 ──── viewers and chatters ramp in ──── 30% the sale opens, buyers rush in ──── 75% the sale ends
      ──── 80% buyers leave ──── 92% everyone leaves (the ledger is final) ──── 100% the report

With --sales N, N sales follow one another between 30% and 75%. Every moment is a share of the
show's length (--show-seconds, else --run-time, else 300 s), so a 12-second test and an hour-long
rehearsal follow the same script.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SaleSlot:
    """One sale of the show: when the host announces it (a countdown), when it opens, when the host ends it."""

    index: int
    announce: float
    opens: float
    ends: float


@dataclass(frozen=True)
class ShowPlan:
    """When things happen, in seconds from the start of the show."""

    seconds: float
    sales: int = 1

    @property
    def ramp_end(self) -> float:
        return 0.25 * self.seconds

    @property
    def sale_opens(self) -> float:
        """The first sale opens: the buyer spike."""
        return 0.30 * self.seconds

    @property
    def sale_ends(self) -> float:
        """The last sale ends."""
        return 0.75 * self.seconds

    @property
    def buyers_leave(self) -> float:
        return 0.80 * self.seconds

    @property
    def drain(self) -> float:
        return 0.92 * self.seconds

    def slots(self) -> list[SaleSlot]:
        """The sales, one after the other between the first opening and the last end (a short pause between)."""
        count = max(1, self.sales)
        length = (self.sale_ends - self.sale_opens) / count
        lead = min(10.0, 0.1 * self.seconds, 0.5 * length if count > 1 else 0.1 * self.seconds)
        slots = []
        for index in range(count):
            opens = self.sale_opens + index * length
            ends = opens + (length if index == count - 1 else 0.9 * length)
            slots.append(SaleSlot(index, max(0.0, opens - lead), opens, ends))
        return slots
