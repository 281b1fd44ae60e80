"""Checkout: the one way a buyer's order moves (buy, open or join a group, pay, cancel, read), and a merchant's
export.

Payment goes through the provider, and every movement of money is a row (server.sales.ledger).

Checkout never charges for an order it could not mark paid: the card is authorized first, the
sale's pay script then decides (hold still valid, by the Redis clock), and only then is the
authorization captured; when the script refuses (the hold expired meanwhile, the classic flash
sale bug), the authorization is voided and no unit moves. A payment carries the payer's
idempotency key: a retry with the same key after a lost reply returns the paid order (and
captures, if that had not happened). Whatever is left half done by a crash or an outage (paid but
not captured, authorized but never paid) the reconciler (server.sales.reconciler) finishes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from server.access.addresses import Address
from server.access.limits import Limits, Rule
from server.access.tokens import Identity
from server.config import Settings
from server.sales.groups import sale_of_group
from server.sales.payments import PaymentProvider, card_digits
from server.sales.records import Order, Outcome, Refusal, Sale, SaleRefused, check_buyer, refused
from server.sales.shipping import Shipping
from server.sales.store import Sales

log = logging.getLogger("livecart.orders")

ORDER_STATUSES = ("held", "paid", "expired", "cancelled", "refunded")
EXPORT_FIELDS = (
    "order_id",
    "sale_id",
    "room_id",
    "product_id",
    "product_title",
    "user_id",
    "quantity",
    "unit_price",
    "amount",
    "currency",
    "status",
    "created_at",
    "hold_expires_at",
    "paid_at",
    "closed_at",
    "payment_ref",
    "group_id",
    "ship_name",
    "ship_address",
    "ship_phone",
)

_DECLINES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_number": "That card number isn't valid.",
}


class Checkout:
    """A buyer's orders and a merchant's export, on top of Sales and a payment provider."""

    def __init__(
        self, sales: Sales, provider: PaymentProvider, limits: Limits, shipping: Shipping, settings: Settings
    ) -> None:
        self.sales = sales
        self.shipping = shipping
        self.provider = provider
        self.limits = limits
        self._card_key = hashlib.sha256(f"cards:{settings.secret_key}".encode()).digest()
        self._payment_rules = (
            Rule("pay-order", *settings.limit_payments_order),
            Rule("pay-user", *settings.limit_payments_user),
            Rule("pay-address", *settings.limit_payments_address),
        )

    async def buy(self, sale_id: str, buyer: Identity, key: str, quantity: int) -> Outcome:
        """Hold units for the buyer (a new order), or return the order this idempotency key made before.
        Only buyers the sale admits (its `buyers` rule: signed in by default) may."""
        return await self.sales.reserve(sale_id, buyer.user_id, key, quantity, self._admit(buyer))

    async def open_group(self, sale_id: str, buyer: Identity, key: str) -> Outcome:
        """Lead a new group of a group-buy offer: a one-unit hold at the leader's price (docs/group-buys.md)."""
        return await self.sales.reserve_group(sale_id, buyer.user_id, buyer.name, key, None, self._admit(buyer))

    async def join_group(self, group_id: str, buyer: Identity, key: str) -> Outcome:
        """Take a place in an open group: a one-unit hold at the group price."""
        sale_id = sale_of_group(group_id)
        if sale_id is None:
            raise refused(Refusal.UNKNOWN_GROUP)
        return await self.sales.reserve_group(sale_id, buyer.user_id, buyer.name, key, group_id, self._admit(buyer))

    @staticmethod
    def _admit(buyer: Identity) -> Callable[[Sale], None]:
        return lambda sale: check_buyer(sale, buyer.guest, buyer.phone_verified)

    async def get(self, order_id: str, buyer: Identity) -> tuple[Order, Sale]:
        """The buyer's own order (or one they made as a guest before signing in); another's is not_your_order."""
        order, sale = await self.sales.order(order_id)
        if not buyer.owns(order.user_id):
            raise refused(Refusal.NOT_YOUR_ORDER)
        return order, sale

    async def pay(
        self, order_id: str, buyer: Identity, card_number: str, key: str, address: str, ship_to: Address | None = None
    ) -> Outcome:
        """Authorize the card, mark the order paid, capture; or refuse, voiding the authorization.
        The same key again returns the order this payment paid. Each new attempt counts against the payment
        limits of the order, the buyer and their address (card testing stops there). The order ships to `ship_to`
        (remembered for the buyer's next order) or to the address they gave last (server.sales.shipping)."""
        order, sale = await self.get(order_id, buyer)
        user_id = order.user_id
        if order.status == "paid" and order.payment_key == key and order.payment_ref:
            await self._capture(order, sale, order.payment_ref)  # the first attempt may have died before it
            return Outcome(order, sale, await self.sales.now())
        if order.status != "held":
            code = {
                "paid": Refusal.ALREADY_PAID,
                "refunded": Refusal.ALREADY_PAID,
                "cancelled": Refusal.ORDER_CANCELLED,
            }.get(order.status, Refusal.HOLD_EXPIRED)
            raise refused(code)
        order_rule, user_rule, address_rule = self._payment_rules
        attempt = hashlib.sha256(f"{order_id}\n{key}\n{card_number}".encode()).hexdigest()[:24]
        await self.limits.take(
            "too many payment attempts",
            (order_rule, order_id),
            (user_rule, buyer.user_id),
            (address_rule, address),
            attempt=attempt,  # the same payment again (a retry, a double tap) is not another attempt
        )
        await self.shipping.ship(order_id, sale.merchant_id, buyer.user_id, ship_to)
        amount = order.amount(sale)
        authorization = await self.provider.authorize(
            reference=order_id, key=key, amount=amount, currency=sale.currency, card_number=card_number
        )
        if not authorization.approved:
            reason = _DECLINES.get(authorization.decline_code or "", "Your card was declined.")
            raise SaleRefused(Refusal.PAYMENT_DECLINED, f"{reason} Try another card before your reservation expires.")
        card = hmac.new(self._card_key, card_digits(card_number).encode(), hashlib.sha256).hexdigest()[:32]
        await self._record(authorization.id, "authorization", order, sale, card)
        try:
            outcome = await self.sales.pay(order_id, user_id, authorization.id, key)
        except SaleRefused:
            await self.provider.void(authorization.id)
            await self._record(authorization.id, "void", order, sale)
            raise
        if outcome.order.payment_ref != authorization.id:  # the same key paid at this moment with another card
            await self.provider.void(authorization.id)
            await self._record(authorization.id, "void", order, sale)
        await self._capture(outcome.order, sale, outcome.order.payment_ref or authorization.id)
        return outcome

    async def _capture(self, order: Order, sale: Sale, authorization_id: str) -> None:
        """Capture a paid order's authorization and record it; a failure is left to the reconciler, not the buyer."""
        try:
            await self.provider.capture(authorization_id)
            await self._record(authorization_id, "capture", order, sale)
        except Exception as problem:  # the order is paid and the funds authorized: the reconciler captures
            log.warning(
                "order %s paid but capture of %s failed (%r): the reconciler will", order.id, authorization_id, problem
            )

    async def _record(
        self, authorization_id: str, kind: str, order: Order, sale: Sale, card: str | None = None
    ) -> None:
        await self.sales.ledger.record_payment(
            authorization_id, kind, order.id, sale.merchant_id, order.amount(sale), sale.currency, card=card
        )

    async def cancel(self, order_id: str, buyer: Identity) -> Outcome:
        order, _ = await self.get(order_id, buyer)
        return await self.sales.cancel(order_id, order.user_id)

    async def export(self, merchant_id: str, status: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """The merchant's orders (optionally of one status) from the record, sale by sale, oldest first within a
        sale (a live sale's last second may not be there yet: the backup's lag)."""
        ships = await self.shipping.of_merchant(merchant_id)
        async for order, sale in self.sales.ledger.export(merchant_id, status):
            yield export_row(order, sale, ships.get(order.id))


def export_row(order: Order, sale: Sale, ship: Address | None) -> dict[str, Any]:
    return {
        "order_id": order.id,
        "sale_id": sale.id,
        "room_id": sale.room_id,
        "product_id": sale.product["id"],
        "product_title": sale.product["title"],
        "user_id": order.user_id,
        "quantity": order.quantity,
        "unit_price": order.unit_price(sale),
        "amount": order.amount(sale),
        "currency": sale.currency,
        "status": order.status,
        "created_at": _iso(order.created_at),
        "hold_expires_at": _iso(order.hold_expires_at),
        "paid_at": _iso(order.paid_at),
        "closed_at": _iso(order.closed_at),
        "payment_ref": order.payment_ref,
        "group_id": order.group_id,
        "ship_name": None if ship is None else ship.name,
        "ship_address": None if ship is None else ship.address,
        "ship_phone": None if ship is None else ship.phone,
    }


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
