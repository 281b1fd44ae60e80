// Regular-price buying in the viewer room: each product's shelf (its units at the regular price, from the room's bag
// or the product's own shelf), "Notify me when it's back" (the waitlist), and the `product.back` toast with its Buy.

import { api } from "./api.js";
import { t } from "./strings/room.js";
import { h, money, toast } from "./ui.js";

const JITTER_MS = 1000; // reads prompted by a room event are spread over this long: not every viewer at once
const BACK_TOAST_MS = 9000;

/** A shelf's units for sale now (0 for none, or a shelf never stocked). */
export function shelfUnits(shelf) {
  return shelf && shelf.status !== "sold_out" ? Math.max(0, shelf.available || 0) : 0;
}

/**
 * What the room knows of its products' shelves. `room` is the page's RoomState, `session` its Session, `toasts` its
 * toast stack; `buy(sale, quantity)` is the page's checkout, `signIn({reason, then})` its sign-in dialog, and
 * `changed()` is called when a shelf or a waitlist mark changed (the card and the bag draw again).
 *
 * The page calls personChanged() when the shopper changes, pinned(productId) and dealOver(productId) for the room
 * events after which a product's shelf matters, and backArrived(event) for `product.back`.
 */
export class Shelves {
  constructor({ room, session, roomId, toasts, buy, signIn, changed }) {
    this.room = room;
    this.session = session;
    this.roomId = roomId;
    this.toasts = toasts;
    this.buy = buy;
    this.signIn = signIn;
    this.changed = changed;
    this.known = new Map(); // product id -> {shelf, waitlisted (true, false, or undefined: not asked)}
    this.reading = new Map(); // product id -> the read under way
    this.busy = new Set(); // product ids whose waitlist mark is being changed
  }

  /** The product's shelf as known ({shelf, waitlisted}), or undefined: not read yet. */
  of(productId) {
    return this.known.get(productId);
  }

  /** The product's shelf, read unless known; `soon`: after a short random wait (a room event prompted it). */
  want(productId, { soon = false } = {}) {
    if (!productId || this.known.has(productId) || this.reading.has(productId)) return;
    this.read(productId, { soon });
  }

  /** Read the product's shelf and the caller's waitlist mark again. */
  read(productId, { soon = false } = {}) {
    const merchantId = this.room.merchantId;
    if (!merchantId) return Promise.resolve();
    const reading = (async () => {
      if (soon) await new Promise((resolve) => setTimeout(resolve, Math.random() * JITTER_MS));
      const path = `/api/merchants/${encodeURIComponent(merchantId)}/products/${encodeURIComponent(productId)}/shelf`;
      try {
        const answer = await api(path, { session: this.session });
        this.known.set(productId, { shelf: answer.shelf ?? null, waitlisted: Boolean(answer.waitlisted) });
        this.changed();
      } catch {
        // the card offers nothing it can't; the next prompt reads again
      } finally {
        this.reading.delete(productId);
      }
    })();
    this.reading.set(productId, reading);
    return reading;
  }

  /** The room's bag, each product with its shelf: [{...product, shelf}] (also kept here). */
  async bag() {
    const answer = await api(`/api/rooms/${encodeURIComponent(this.roomId)}/bag`, { session: this.session });
    const products = answer.products || [];
    for (const product of products) {
      const known = this.known.get(product.id);
      this.known.set(product.id, { shelf: product.shelf ?? null, waitlisted: known?.waitlisted });
    }
    return products;
  }

  /** The shopper changed: waitlist marks are someone else's. */
  personChanged() {
    this.known.clear();
    this.changed();
  }

  /** The host presents a product: its shelf is read (soon) if not known. */
  pinned(productId) {
    this.want(productId, { soon: true });
  }

  /** A flash deal of the product sold out or ended: its shelf is what the card offers next. */
  dealOver(productId) {
    this.known.delete(productId);
    this.want(productId, { soon: true });
  }

  /** The buyer bought from the product's shelf: its units changed. */
  bought(productId) {
    this.known.delete(productId);
    this.want(productId);
  }

  /** `product.back`: units are back on a product the shopper waited for (they left the list). */
  backArrived(event) {
    const product = event.product || {};
    if (event.merchant_id === this.room.merchantId) {
      this.known.set(product.id, { shelf: event.shelf ?? null, waitlisted: false });
      this.changed();
    }
    const node = toast(this.toasts, t("back.toast", { title: product.title || t("back.anItem") }), {
      kind: "buy",
      ms: BACK_TOAST_MS,
    });
    node.classList.add("toast-with-action");
    node.dataset.testid = "back-toast";
    node.append(
      h("button.toast-action", { type: "button", on: { click: () => this.buyShelf(event.shelf) } }, t("card.buy")),
    );
  }

  /** Buy one unit from a shelf at the regular price, through the page's checkout. */
  async buyShelf(shelf) {
    if (!shelf?.sale_id) return;
    try {
      const sale = await api(`/api/sales/${encodeURIComponent(shelf.sale_id)}`);
      this.buy({ ...sale, shelf: true }, 1);
    } catch (error) {
      toast(this.toasts, error.message, { kind: "error" });
    }
  }

  /** "Notify me when it's back", or "We'll tell you" once asked (a tap again stops it): a button for the card or the
   * bag. */
  notifyButton(product, { compact = false } = {}) {
    const waitlisted = this.known.get(product.id)?.waitlisted === true;
    const label = t(waitlisted ? "notify.told" : compact ? "notify.short" : "notify.long");
    return h(
      "button.notify-button",
      {
        type: "button",
        "aria-pressed": String(waitlisted),
        title: t(waitlisted ? "notify.stop" : "notify.title"),
        disabled: this.busy.has(product.id),
        dataset: { testid: "notify", productId: product.id },
        on: { click: () => this.toggleWaitlist(product) },
      },
      label,
    );
  }

  /** Ask to be told when the product is back, or stop asking; a guest is asked to sign in first. */
  async toggleWaitlist(product) {
    const user = this.session.user;
    if (!user || user.guest) {
      this.signIn({
        reason: t("notify.signIn"),
        then: () => this.toggleWaitlist(product),
      });
      return;
    }
    if (this.busy.has(product.id)) return;
    const known = this.known.get(product.id) || { shelf: null, waitlisted: false };
    const join = known.waitlisted !== true;
    const merchantId = this.room.merchantId;
    const path = `/api/merchants/${encodeURIComponent(merchantId)}/products/${encodeURIComponent(product.id)}/waitlist`;
    this.busy.add(product.id);
    this.changed();
    try {
      const answer = await api(path, {
        method: join ? "PUT" : "DELETE",
        session: this.session,
        body: join ? { room_id: this.roomId } : undefined,
      });
      this.known.set(product.id, { ...this.known.get(product.id), waitlisted: Boolean(answer?.waitlisted ?? join) });
      if (join) toast(this.toasts, t("notify.joined", { title: product.title }), { kind: "ok" });
    } catch (error) {
      if (error.code === "sign_in_required") {
        this.signIn({ reason: t("notify.signInShort"), then: () => this.toggleWaitlist(product) });
      } else {
        toast(this.toasts, error.message, { kind: "error" });
      }
    } finally {
      this.busy.delete(product.id);
      this.changed();
    }
  }
}

/** "Buy at regular price $59.00" for a shelf with units. */
export function regularPriceLabel(shelf) {
  return t("buy.regular", { price: money(shelf.price, shelf.currency) });
}
