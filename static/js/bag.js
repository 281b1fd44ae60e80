// The viewer room's bag ("Products in this show"): every product in the show with its price and stock, and what can be
// done with it: Buy at a live flash deal's price, Buy at the regular price from its shelf, or, when neither has units,
// "Sold out" with "Notify me when it's back".

import { saleStatus } from "./room-state.js";
import { shelfUnits } from "./shelf.js";
import { t } from "./strings/room.js";
import { $, h, keptImage, money, text } from "./ui.js";

const JITTER_MS = 800; // a bag change read again by every open bag: spread over this long

/**
 * The bag sheet. `room` is the page's RoomState, `shelves` its Shelves, `mine` its MyOrders, `now()` the server's
 * clock; `buy(sale, quantity)` is the page's checkout, `openSheet(selector)` shows a sheet.
 *
 * The page calls open() for the bag button, render() when the room's sales or the shelves changed, and bagChanged()
 * for `bag.changed`.
 */
export class Bag {
  constructor({ room, shelves, mine, now, buy, openSheet }) {
    this.room = room;
    this.shelves = shelves;
    this.mine = mine;
    this.now = now;
    this.buy = buy;
    this.openSheet = openSheet;
    this.sheet = $("#bag-sheet");
    this.list = $("#bag-list");
    this.products = null; // the bag as last read with its shelves ([{...product, shelf}]), null: not read yet
    this.images = new Map(); // picture URL -> its <img>, kept across renders
    this.reading = null;
    this.again = false;
  }

  get isOpen() {
    return !this.sheet.hidden;
  }

  /** Show the bag and read it, each product with its shelf. */
  open() {
    this.openSheet("#bag-sheet");
    this.render();
    this.read();
  }

  /** The host changed the bag: the count now, the list read again if shown (or when next opened). */
  bagChanged() {
    this.products = null;
    this.render();
    if (this.isOpen) setTimeout(() => this.read(), Math.random() * JITTER_MS);
  }

  /** Read the bag with its shelves (one read at a time; a change meanwhile reads once more after it). */
  async read() {
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = this.shelves
      .bag()
      .then((products) => {
        this.products = products;
      })
      .catch(() => {
        // the bag as the room knows it, without shelves
      });
    await this.reading;
    this.reading = null;
    this.render();
    if (this.again) {
      this.again = false;
      this.read();
    }
  }

  /** Draw the count, and the list while it is shown. */
  render() {
    text($("#bag-count"), this.room.bag.length);
    if (!this.isOpen) return;
    const shelves = new Map((this.products || []).map((product) => [product.id, product]));
    this.list.replaceChildren(...this.room.bag.map((product) => this._item(shelves.get(product.id) || product)));
  }

  _item(product) {
    const pinned = this.room.pinned?.id === product.id;
    const deal = this._liveDeal(product.id);
    const known = this.shelves.of(product.id);
    const shelf = known ? known.shelf : product.shelf;
    const units = shelfUnits(shelf);
    let meta;
    let action;
    let state;
    if (deal) {
      state = "deal";
      meta = [
        h("strong.deal", {}, money(deal.price, deal.currency)),
        h("s", {}, money(product.price, product.currency)),
        h("span.stock-note", {}, t("buy.left", { count: deal.available })),
      ];
      action = this._buyButton(deal, deal.per_user_limit, () => this.buy(deal, 1));
    } else if (units > 0) {
      state = "shelf";
      meta = [h("strong", {}, money(shelf.price, shelf.currency)), h("span.stock-note", {}, t("buy.left", { count: units }))];
      action = this._buyButton({ id: shelf.sale_id }, shelf.per_user_limit, () => this.shelves.buyShelf(shelf));
    } else if (shelf === undefined) {
      state = "loading"; // not read yet: its price alone
      meta = [h("strong", {}, money(product.price, product.currency))];
      action = null;
    } else {
      state = "sold_out";
      meta = [h("strong", {}, money(product.price, product.currency)), h("span.sold-out", {}, t("buy.soldOut"))];
      action = this.shelves.notifyButton(product);
    }
    return h(
      pinned ? "li.bag-item.pinned" : "li.bag-item",
      { dataset: { productId: product.id, state } },
      keptImage(this.images, product.image_url, "img"),
      h(
        "div.bag-text",
        {},
        pinned ? h("span.live-now", {}, t("buy.presenting")) : null,
        h("span.title", { title: product.title }, product.title),
        h("span.meta", {}, ...meta),
      ),
      action,
    );
  }

  /** Buy, or the buyer's own state in that sale ("Purchased ✓" buys one more; "Limit reached" is done). */
  _buyButton(sale, limit, buy) {
    const own = this.mine.state(sale.id, limit);
    const label = t(own === "limit" ? "buy.limit" : own === "purchased" ? "buy.purchased" : "card.buy");
    return h(
      own ? "button.button-secondary.bag-buy" : "button.button-primary.bag-buy",
      { type: "button", disabled: own === "limit", dataset: { testid: "bag-buy", own: own || "" }, on: { click: buy } },
      label,
    );
  }

  /** The product's flash deal on now with units (never a group buy's, nor its shelf). */
  _liveDeal(productId) {
    const now = this.now();
    for (const sale of this.room.sales.values()) {
      if (sale.group || sale.shelf || sale.auction_id || sale.product.id !== productId) continue;
      if (saleStatus(sale, now) === "live" && sale.available > 0) return sale;
    }
    return null;
  }
}
