"""What this process changed in sales since the feed last looked: the one channel from the sales store to the feed."""

from __future__ import annotations

import orjson


class SaleChanges:
    """Sales whose stock changed here (their room must hear it), groups whose members must hear of them, and paid
    orders not yet toasted.

    The store notes; the feed takes what is due and puts back what it could not tell yet.
    """

    def __init__(self) -> None:
        self._stock: dict[str, str] = {}  # sale id -> room id
        self._bought: dict[str, tuple[int, int]] = {}  # sale id -> (orders, units) since the last toast
        self._groups: dict[str, tuple[str, str, int]] = {}  # group id -> (room id, its newest JSON, its version)

    def stock_changed(self, sale_id: str, room_id: str) -> None:
        if room_id:  # a product's shelf (no room) is told to nobody
            self._stock[sale_id] = room_id

    def bought(self, sale_id: str, units: int) -> None:
        orders, total = self._bought.get(sale_id, (0, 0))
        self._bought[sale_id] = (orders + 1, total + units)

    def group_changed(self, room_id: str, group: str) -> None:
        """A group changed (its members hear it): `group` is its JSON after the change (newer versions replace). Its
        offer's stock changed with it (noted by stock_changed: the board goes out with the stock)."""
        parsed = orjson.loads(group)
        known = self._groups.get(parsed["id"])
        if known is None or known[2] < parsed["version"]:
            self._groups[parsed["id"]] = (room_id, group, parsed["version"])

    def take_groups(self) -> list[tuple[str, str]]:
        """The groups that changed (room id, group JSON), forgotten here."""
        taken, self._groups = self._groups, {}
        return [(room_id, group) for room_id, group, _ in taken.values()]

    def take_stock(self) -> dict[str, str]:
        """The sales whose stock changed, forgotten here until noted again (or put back)."""
        taken, self._stock = self._stock, {}
        return taken

    def put_back(self, sale_id: str, room_id: str) -> None:
        """A stock change that could not be told yet: the next flush tries again."""
        self._stock.setdefault(sale_id, room_id)

    def bought_since(self) -> dict[str, tuple[int, int]]:
        return dict(self._bought)

    def toasted(self, sale_id: str) -> None:
        self._bought.pop(sale_id, None)
