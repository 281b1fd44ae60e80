// The buyer's own orders with the room's shop, as the viewer room needs them: the units they hold or paid for in each
// sale (the card's "Purchased ✓" and "Limit reached"), a hold to pay after a reload, and their own payments not yet
// counted in a `sale.toast` (so a buyer is never told that "someone" bought what they just bought).

import { api } from "./api.js";

// An order's statuses ranked by how far it has gone: a newer answer never takes one back (the record may lag).
const RANK = { held: 0, paid: 1, expired: 2, cancelled: 2, refunded: 2 };
const LIMIT = 100; // orders read on load: a buyer's recent ones with this shop
// An own payment is expected in a toast this long at most (toasts come every few seconds; a slow page may miss one,
// as the newest toast of a sale replaces an older one not yet sent).
const TOAST_WAIT_MS = 15000;

/**
 * The room page's own orders. `session` is its Session, `room` its RoomState (its merchant), `now()` the server's
 * clock, `changed()` is called when what the card shows may have changed.
 *
 * The page calls load() after each snapshot and when the shopper changes, and placed(order) / moved(order) as its
 * checkout holds, pays, cancels or loses a hold; paying(saleId) as a payment is sent and settled(saleId, paid) when it
 * is answered; ownShare(event) when a `sale.toast` arrives (`retoast(event)` gets one that had to wait).
 */
export class MyOrders {
  constructor({ session, room, now, changed, retoast }) {
    this.session = session;
    this.room = room;
    this.now = now;
    this.changed = changed;
    this.retoast = retoast;
    this.orders = new Map(); // order id -> the order's public form (sale_id, status, quantity, hold_expires_at)
    this.untoasted = new Map(); // sale id -> when each of the buyer's payments not yet counted in a toast was paid
    this.sending = new Map(); // sale id -> the buyer's payments sent and not yet answered
    this.waiting = new Map(); // sale id -> toasts that came while one was (told again once answered)
    this.person = null;
    this.loading = 0;
  }

  /** Read the buyer's orders with this shop (a new person starts from nothing). */
  async load() {
    const person = this.session.user?.id ?? null;
    if (person !== this.person) {
      this.person = person;
      this.orders.clear();
      this.untoasted.clear();
      this.waiting.clear();
    }
    const merchantId = this.room.merchantId;
    if (!person || !merchantId) return;
    const call = ++this.loading;
    try {
      const query = `merchant_id=${encodeURIComponent(merchantId)}&limit=${LIMIT}`;
      const answer = await api(`/api/me/orders?${query}`, { session: this.session });
      if (call !== this.loading || this.person !== (this.session.user?.id ?? null)) return;
      for (const order of answer.orders || []) this._put(order);
      this.changed();
    } catch {
      // the card shows what this page bought; the next snapshot reads them again
    }
  }

  /** The checkout holds a new order. */
  placed(order) {
    this._put(order);
    this.changed();
  }

  /** An order of the buyer's moved on: paid, cancelled, expired, refunded. */
  moved(order) {
    this._put(order);
    this.changed();
  }

  /** A payment in this sale is being sent: a toast that comes meanwhile waits for its answer. */
  paying(saleId) {
    this.sending.set(saleId, (this.sending.get(saleId) || 0) + 1);
  }

  /** The payment sent in this sale was answered: `paid`, it will be counted in a toast as the buyer's own. The toasts
   * that waited for it are told again (`retoast`). */
  settled(saleId, paid) {
    const left = (this.sending.get(saleId) || 0) - 1;
    if (left > 0) this.sending.set(saleId, left);
    else this.sending.delete(saleId);
    if (paid) this.untoasted.set(saleId, [...(this.untoasted.get(saleId) || []), Date.now()]);
    if (left > 0) return;
    const waiting = this.waiting.get(saleId) || [];
    this.waiting.delete(saleId);
    for (const event of waiting) this.retoast(event);
  }

  /** Of a `sale.toast`'s orders, how many were the buyer's own and how many others': {mine, others}; null while a
   * payment of theirs in that sale is unanswered (the toast is told again once it is). */
  ownShare(event) {
    if (this.sending.has(event.sale_id)) {
      const waiting = this.waiting.get(event.sale_id) || [];
      waiting.push(event);
      this.waiting.set(event.sale_id, waiting.slice(-3));
      return null;
    }
    const orders = Math.max(0, event.orders || 0);
    const since = Date.now() - TOAST_WAIT_MS;
    const pending = (this.untoasted.get(event.sale_id) || []).filter((at) => at > since);
    const mine = Math.min(pending.length, orders);
    if (pending.length > mine) this.untoasted.set(event.sale_id, pending.slice(mine));
    else this.untoasted.delete(event.sale_id);
    return { mine, others: orders - mine };
  }

  /** Units of this sale the buyer holds (holds not yet lapsed) or paid for: what counts against its limit. */
  units(saleId) {
    let units = 0;
    for (const order of this._of(saleId)) if (this._holds(order) || order.status === "paid") units += order.quantity;
    return units;
  }

  /** Units of this sale the buyer paid for. */
  paid(saleId) {
    let units = 0;
    for (const order of this._of(saleId)) if (order.status === "paid") units += order.quantity;
    return units;
  }

  /** What the buyer's own orders make of a Buy in this sale (`limit`: its units per buyer): "limit" when they hold or
   * paid for as many as they may, "purchased" when they paid for some, else null. */
  state(saleId, limit) {
    if (limit && this.units(saleId) >= limit) return "limit";
    return this.paid(saleId) > 0 ? "purchased" : null;
  }

  /** The buyer's held order in this sale whose hold is still running (to pay it after a reload), or null. */
  held(saleId) {
    return this._of(saleId).find((order) => this._holds(order)) || null;
  }

  _holds(order) {
    return order.status === "held" && order.hold_expires_at > this.now();
  }

  _of(saleId) {
    return [...this.orders.values()].filter((order) => order.sale_id === saleId);
  }

  _put(order) {
    if (!order?.order_id || !order.sale_id) return;
    const known = this.orders.get(order.order_id);
    if (known && (RANK[known.status] ?? 0) > (RANK[order.status] ?? 0)) return;
    this.orders.set(order.order_id, { ...known, ...order });
  }
}
