// A room as a page knows it: built from a snapshot and kept current by applying events. No DOM, no I/O.

import { Event, SALE_EVENTS } from "./protocol.js";

const SALE_STOCK = ["available", "held", "sold", "version"];

export class RoomState {
  /** An empty room; `chatLimit` bounds the chat kept (the oldest message goes first). */
  constructor({ chatLimit = 120 } = {}) {
    this.chatLimit = chatLimit;
    this.load({});
  }

  /** Replace everything with a snapshot; `{room}` alone (a room record from the REST API) is a bare start. */
  load(snapshot) {
    const room = snapshot.room || {};
    this.id = room.id ?? null;
    this.merchantId = room.merchant_id ?? null;
    this.title = room.title ?? "";
    this.status = room.status ?? null;
    this.stream = room.stream ?? null;
    this.pinned = snapshot.pinned || null;
    this.bag = snapshot.bag || [];
    this.chat = (snapshot.chat || []).slice(-this.chatLimit);
    this.slowMode = snapshot.slow_mode || 0;
    this.viewers = snapshot.viewers || 0;
    this.likes = snapshot.likes || 0;
    this.sharers = sharersOf(snapshot.sharers); // the room's top sharers: [{name, buyers, orders}]
    this.earnings = null; // this viewer's own numbers as a sharer (the private `earnings` event; never in a snapshot)
    this.sales = new Map((snapshot.sales || []).map((sale) => [sale.id, { ...sale }])); // id -> sale, live stock
    // sale id -> a group-buy offer's board: {sale_id, version, open, forming, filled, failed, reserved}
    this.groups = new Map(Object.entries(boardsOf(snapshot.groups)));
    // id -> a giveaway's or an auction's public card (docs/giveaways.md, docs/auctions.md)
    this.giveaways = new Map(Object.entries(boardsOf(snapshot.giveaways)));
    this.auctions = new Map(Object.entries(boardsOf(snapshot.auctions)));
    this.offset = snapshot.offset ?? null; // the last durable event applied
    this.epoch = snapshot.epoch ?? null;
  }

  /** Apply one event; false when there is nothing new to show (stock no newer than known, an unknown type). */
  apply(event) {
    if (typeof event.offset === "number") this.offset = event.offset;
    switch (event.type) {
      case Event.ROOM_STATUS:
        this.status = event.status;
        if (event.chat_cleared) this.chat = []; // a new show after an ended one starts with an empty chat
        return true;
      case Event.STREAM_STATE:
        this.stream = event.state;
        return true;
      case Event.PRODUCT_PINNED:
        this.pinned = event.product;
        return true;
      case Event.PRODUCT_UNPINNED:
        this.pinned = null;
        return true;
      case Event.BAG_CHANGED:
        this.bag = event.products;
        return true;
      case Event.CHAT_MESSAGE:
        this.chat.push(event.message);
        if (this.chat.length > this.chatLimit) this.chat.shift();
        return true;
      case Event.CHAT_DELETED:
        this.chat = this.chat.filter((message) => message.id !== event.message_id);
        return true;
      case Event.CHAT_SLOW_MODE:
        this.slowMode = event.seconds;
        return true;
      case Event.VIEWERS:
        this.viewers = event.count;
        return true;
      case Event.LIKES:
        this.likes = event.total;
        return true;
      case Event.STOCK:
        return this._applyStock(event);
      case Event.SALE_TOAST:
        return true; // nothing to keep: the page shows it
      case Event.SHARERS:
        this.sharers = sharersOf(event.top);
        return true;
      case Event.EARNINGS:
        this.earnings = event;
        return true;
      case Event.GROUPS:
        return this._applyBoard(event);
      case Event.GROUP:
        return true; // the viewer's own group: nothing kept here, the page shows it (group-buy.js)
      case Event.GIVEAWAY:
        return putCard(this.giveaways, event);
      case Event.AUCTION:
        return putCard(this.auctions, event);
      default:
        if (!SALE_EVENTS.includes(event.type) && event.type !== Event.SALE_UPDATED) return false;
        this.putSale(event.sale);
        return true;
    }
  }

  /** A sale as announced (by an event or a REST reply): terms and status, and stock unless the known one is newer. */
  putSale(sale) {
    const known = this.sales.get(sale.id);
    const kept = known && known.version > sale.version ? pick(known, SALE_STOCK) : {};
    this.sales.set(sale.id, { ...sale, ...kept });
  }

  /** A group-buy offer's board (the `groups` event), unless it is not newer (by `version`) than the one known. */
  _applyBoard(event) {
    const known = this.groups.get(event.sale_id);
    if (known && event.version <= known.version) return false;
    const { type: _type, ts: _ts, offset: _offset, ...board } = event;
    this.groups.set(event.sale_id, board);
    return true;
  }

  /** Live stock of a known sale, unless it is not newer (by `version`) than the stock known. */
  _applyStock(stock) {
    const sale = this.sales.get(stock.sale_id);
    if (!sale || stock.version <= sale.version) return false;
    Object.assign(sale, pick(stock, SALE_STOCK));
    return true;
  }
}

/** A giveaway's or an auction's card (its event), unless the one known has a higher `version`. */
function putCard(cards, event) {
  const known = cards.get(event.id);
  if (known && event.version < known.version) return false;
  const { type: _type, ts: _ts, ...card } = event;
  cards.set(event.id, card);
  return true;
}

/** The newest card (by `starts_at`) of a map of giveaways or auctions; null when there is none. */
export function newestCard(cards) {
  let newest = null;
  for (const card of cards.values()) if (!newest || card.starts_at > newest.starts_at) newest = card;
  return newest;
}

/** The entries of a snapshot's map (`groups`: sale id -> board; `giveaways`, `auctions`: id -> card); anything else
 * is none. */
function boardsOf(value) {
  if (!value || typeof value !== "object" || Array.isArray(value)) return {};
  return Object.fromEntries(Object.entries(value).filter(([, board]) => board && typeof board === "object"));
}

/** The live status of a sale at `now` (server clock, ms): scheduled, live, sold_out or ended. */
export function saleStatus(sale, now) {
  if (sale.status === "ended" || now >= sale.ends_at) return "ended";
  if (now < sale.starts_at) return "scheduled";
  if (sale.available <= 0 && sale.held <= 0) return "sold_out";
  return "live";
}

/** A list of top sharers, from a snapshot's `sharers` or an event's `top` (a list; anything else is none). */
function sharersOf(value) {
  const list = Array.isArray(value) ? value : Array.isArray(value?.top) ? value.top : [];
  return list.filter((sharer) => sharer && typeof sharer === "object");
}

function pick(source, names) {
  return Object.fromEntries(names.map((name) => [name, source[name]]));
}
