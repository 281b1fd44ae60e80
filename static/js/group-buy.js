// Group buys in the viewer room (docs/group-buys.md): the offer's card (the group price against the solo price,
// "Open a group"), the open groups to join, the viewer's own group (its members, countdown and share link; complete,
// or failed and refunded), and the group a shared link (?group=) opens.

import { api, perPerson, storage } from "./api.js";
import { saleStatus } from "./room-state.js";
import { t } from "./strings/room.js";
import { $, $$, clock, copyText, h, keptImage, money, text, toast } from "./ui.js";

const SHOWN_OPEN = 6; // open groups listed (the board has at most 20); the list scrolls past three
const SHOWN_AVATARS = 6;
const KEPT_ORDERS = 10; // group orders remembered per person, to find their groups again after a reload
const KEPT_CLOSED_MS = 30 * 60 * 1000; // a closed group is shown again after a reload for this long
const REFUND_CHECKS = 5; // reads of a failed group's order until it shows refunded (the refund follows at once)
const FORMING = new Set(["pending", "open"]);
const CLOSED = new Set(["filled", "failed", "cancelled"]);
const STATUS_ORDER = { live: 0, scheduled: 1, sold_out: 2, ended: 3 };
const RETRYABLE = new Set(["network", "unavailable", "rate_limited", "http_502", "http_503", "http_504"]);
const orders = perPerson(storage("local"), "livecart.group-orders"); // per person: their group orders' ids

/** True for an order of a group buy (the order carries its group, or at least the group's id). */
export function isGroupOrder(order) {
  return Boolean(order && (order.group || order.group_id));
}

/** Titles of the checkout's error step for refusals of opening or joining a group (room.js shows them). */
export const GROUP_REFUSAL_TITLES = Object.freeze({
  get group_full() {
    return t("group.full");
  },
  get group_closed() {
    return t("group.closed");
  },
  get group_not_open() {
    return t("group.notOpen");
  },
  get in_group() {
    return t("group.inGroup");
  },
  get unknown_group() {
    return t("group.unknown");
  },
  get not_a_group_offer() {
    return t("group.notGroup");
  },
  get group_only() {
    return t("group.only");
  },
});

/**
 * The room page's group buys. `room` is the page's RoomState, `session` its Session, `now()` the server's clock.
 * The page lends its checkout: `buy(sale, quantity, offer)` reserves through `offer.path` and takes the shopper to
 * the payment step, `payHeld(sale, order, detail)` opens that step for an order already held.
 *
 * The page calls snapshot() after each snapshot, ready() once it has a session, boardChanged(saleId) for `groups`,
 * groupArrived(event) for `group`, salesChanged() for stock and sale events, orderPlaced(order) and orderChanged(order)
 * from its checkout, and tick() a few times a second.
 */
export class GroupBuys {
  constructor({ room, session, roomId, toasts, now, buy, payHeld }) {
    this.room = room;
    this.session = session;
    this.roomId = roomId;
    this.toasts = toasts;
    this.now = now;
    this.buy = buy;
    this.payHeld = payHeld;
    this.card = $("#group-card");
    this.mine = new Map(); // group id -> {group, orderId, order, events}: the viewer's own groups
    this.announced = new Set(); // "<group id> <state>" already told
    this.dismissed = new Set(); // closed groups the viewer put away
    this.invite = { id: new URLSearchParams(location.search).get("group"), group: null, asking: false };
    this.shareCode = undefined; // the person's share code with this shop; null: they can't make one
    this.signature = "";
    this.images = new Map(); // picture URL -> its <img>, kept across renders
    this.person = session.user?.id ?? null;
    session.onChange((user) => this._personChanged(user));
  }

  // --- what the page tells us ---------------------------------------------------------------------------

  /** The page has a session: read the group a shared link opened. */
  ready() {
    this._loadInvite();
  }

  /** A fresh snapshot (the first, a reconnect's, a new person's): every board is new; the viewer's groups are read
   * again from their orders (events may have been missed). */
  snapshot() {
    this.render();
    this._restore();
  }

  /** An offer's board changed (the `groups` event). */
  boardChanged(saleId) {
    const invited = this.invite.group;
    if (invited && invited.sale_id === saleId && FORMING.has(invited.state)) {
      const listed = (this.room.groups.get(saleId)?.open || []).find((group) => group.id === invited.id);
      if (listed) this.invite.group = listed;
      else this._loadInvite(); // it filled, failed or closed (or is past the board's first 20)
    }
    this.render();
  }

  /** The viewer's own group changed (the private `group` event): a join, a payment, complete, failed, cancelled. */
  groupArrived(event) {
    const { type: _type, ts: _ts, ...group } = event;
    const known = this.mine.get(group.id);
    if (known) known.events += 1;
    this._put(group, {});
    if (this.invite.group?.id === group.id) this.invite.group = group;
    this.render();
  }

  /** Stock or a sale's status changed. */
  salesChanged() {
    this.render();
  }

  /** The checkout reserved a unit in a group (opened or joined): remember the order, show the group. */
  orderPlaced(order) {
    this._orderMoved(order, { quiet: true });
  }

  /** The checkout paid or cancelled a group order; `renote(note)` is told the paid note again as the group changes
   * (the answer may carry only the group's id, or the group may fill a moment later). */
  orderChanged(order, { renote = null } = {}) {
    this._orderMoved(order, { renote });
  }

  _orderMoved(order, { quiet, renote = null }) {
    if (!isGroupOrder(order)) return;
    this._remember(order.order_id);
    const extra = { orderId: order.order_id, order, renote };
    const known = this.mine.get(order.group_id);
    if (order.group) this._put(order.group, extra, { quiet });
    else if (known) Object.assign(known, extra);
    if (!order.group) this._fetchGroup(order.group_id, extra, { quiet }); // an answer with the group's id only
    this.render();
  }

  async _fetchGroup(groupId, extra, { quiet }) {
    try {
      this._put(await api(`/api/groups/${encodeURIComponent(groupId)}`), extra, { quiet });
      this.render();
    } catch {
      // the group's event, or the next snapshot, shows it
    }
  }

  /** What the checkout's last step says for a paid group order: {title, text}. */
  paidNote(order) {
    const group = order.group || this.mine.get(order.group_id)?.group || { state: "open", size: 0, paid: 0 };
    const paid = t("group.paid", { amount: money(order.amount, order.currency) });
    if (group.state === "filled") {
      return { title: t("group.complete"), text: t("group.completeText", { paid }) };
    }
    const missing = Math.max(0, group.size - group.paid);
    const more = missing ? t("group.toGo", { count: missing }) : "";
    return { title: t("group.in"), text: t("group.inText", { paid, more }) };
  }

  /** The card shows this product's group offer (the page's product card then steps aside). */
  showsProduct(productId) {
    if (!this.room.id) return false;
    const sale = this._offer(this.now());
    return Boolean(sale && sale.product.id === productId);
  }

  /** Countdowns; the whole card when a countdown ran out or an offer's status changed. */
  tick() {
    if (!this.room.id) return;
    const now = this.now();
    if (this._signature(now) !== this.signature) {
      this.render();
      return;
    }
    for (const node of $$("[data-until]", this.card)) text(node, countdown(node.dataset, now));
  }

  // --- the card ----------------------------------------------------------------------------------------

  render() {
    if (!this.room.id) return;
    const now = this.now();
    this.signature = this._signature(now);
    const sale = this._offer(now);
    const mine = this._mineShown(now);
    const invite = this._inviteShown();
    const card = this.card;
    if (!sale && !mine.length && !invite) {
      card.hidden = true;
      card.replaceChildren();
      delete card.dataset.saleId;
      return;
    }
    card.hidden = false;
    card.dataset.saleId = sale?.id || "";
    const parts = [
      sale ? this._offerPart(sale, now) : null,
      ...mine.map((entry) => this._minePart(entry, now)),
      invite ? this._invitePart(invite, now) : null,
      sale ? this._openPart(sale, now) : null,
    ];
    card.replaceChildren(...parts.filter(Boolean));
  }

  /** The offer the card shows: the shared group's, else the viewer's forming group's, else the presented
   * product's (live first), else any live offer. */
  _offer(now) {
    const sales = this.room.sales;
    const invited = this._inviteShown();
    if (invited && sales.get(invited.sale_id)?.group) return sales.get(invited.sale_id);
    for (const entry of this.mine.values()) {
      const sale = sales.get(entry.group.sale_id);
      if (sale?.group && FORMING.has(entry.group.state) && mayStay(entry, now)) return sale;
    }
    const pinnedId = this.room.pinned?.id;
    const offers = [...sales.values()].filter((sale) => {
      if (!sale.group) return false;
      const status = saleStatus(sale, now);
      if (pinnedId) return sale.product.id === pinnedId && status !== "ended";
      // every unit in a group (reserved) or sold: its open groups can still be joined
      return status === "live" || (status === "sold_out" && this.room.groups.get(sale.id)?.open?.length > 0);
    });
    offers.sort(
      (a, b) => STATUS_ORDER[saleStatus(a, now)] - STATUS_ORDER[saleStatus(b, now)] || b.starts_at - a.starts_at,
    );
    return offers[0] || null;
  }

  _offerPart(sale, now) {
    const status = saleStatus(sale, now);
    const product = sale.product;
    const terms = sale.group;
    const solo = product.price;
    const leader = leaderPrice(sale);
    const off = solo > sale.price ? Math.round((1 - sale.price / solo) * 100) : 0;
    const forming = this._formingIn(sale.id);
    let label = "openOne";
    if (status === "scheduled") label = "soon";
    else if (status === "ended") label = "ended";
    else if (forming) label = "inAGroup";
    else if (sale.available < terms.size) label = "soldOut";
    const timer =
      status === "scheduled"
        ? clockNode(sale.starts_at, "starts", now)
        : status === "ended"
          ? h("span.group-timer", {}, t("group.ended"))
          : clockNode(sale.ends_at, "ends", now);
    return h(
      "div.group-offer",
      { dataset: { status } },
      keptImage(this.images, product.image_url, "img.group-image"),
      h(
        "div.group-body",
        {},
        h("div.group-tags", {}, h("span.tag.tag-group", {}, t("group.of", { size: terms.size })), timer),
        h("h2.group-title", {}, product.title),
        h(
          "div.group-prices",
          {},
          h("strong.group-price", { dataset: { testid: "group-price" } }, money(sale.price, sale.currency)),
          h("span.group-solo", {}, t("group.solo"), h("s", {}, money(solo, product.currency))),
          off ? h("span.price-off", {}, `−${off}%`) : null,
        ),
        leader < sale.price
          ? h("span.group-leader", {}, t("group.leaderPays", { price: money(leader, sale.currency) }))
          : null,
      ),
      h(
        "button.buy-button.group-open",
        {
          type: "button",
          disabled: label !== "openOne",
          dataset: { testid: "group-open" },
          on: { click: () => this._open(sale) },
        },
        t(`group.${label}`),
      ),
    );
  }

  /** The offer's open groups, closest to filling first (the viewer's own and the shared one are shown above). */
  _openPart(sale, now) {
    const board = this.room.groups.get(sale.id);
    const skip = new Set([...this.mine.keys(), this.invite.group?.id]);
    const open = (board?.open || []).filter((group) => !skip.has(group.id)).slice(0, SHOWN_OPEN);
    if (!open.length) return null;
    const forming = this._formingIn(sale.id);
    return h(
      "div.group-open-list",
      {},
      h("p.group-heading", {}, t("group.forming", { count: open.length })),
      h(
        "ul.group-list",
        { dataset: { testid: "open-groups" } },
        ...open.map((group) => {
          const closing = group.expires_at != null && now >= group.expires_at;
          const full = group.joined >= group.size;
          return h(
            "li.group-row",
            { dataset: { groupId: group.id } },
            avatars(group),
            h(
              "div.group-row-text",
              {},
              h("strong", {}, t("group.joined", { joined: group.joined, size: group.size })),
              closing ? h("span", {}, t("group.closing")) : clockNode(group.expires_at, "left", now),
            ),
            h(
              "button.button-primary.small.group-join",
              {
                type: "button",
                disabled: Boolean(forming) || closing || full,
                on: { click: () => this._join(sale, group) },
              },
              full ? t("group.isFull") : t("group.join"),
            ),
          );
        }),
      ),
    );
  }

  /** One of the viewer's own groups: who is in, how long is left, the share link; then complete or refunded. */
  _minePart(entry, now) {
    const group = entry.group;
    const sale = this.room.sales.get(group.sale_id);
    const order = entry.order;
    const held = holding(order, now) && FORMING.has(group.state);
    const closing = group.state === "open" && now >= group.expires_at;
    let headline;
    let note = null;
    if (group.state === "filled") {
      headline = t("group.complete");
      note = order ? t("group.orderConfirmed", { number: short(order.order_id) }) : t("group.everyConfirmed");
    } else if (group.state === "failed") {
      headline = t("group.failed");
      note = order ? refundNote(order) : null;
    } else if (group.state === "cancelled") {
      headline = t("group.cancelledMine");
    } else if (group.state === "pending") {
      headline = t("group.payToOpen");
      note = t("group.opensOnce", { count: group.size - 1 });
    } else {
      headline = t("group.yours", { joined: group.joined, size: group.size });
      const left = held ? t("group.payToKeep") : t("group.placesLeft", { count: group.size - group.joined });
      const timer = closing ? h("span.group-timer", {}, t("group.closing")) : clockNode(group.expires_at, "left", now);
      note = [timer, ` · ${left}`];
    }
    let action = null;
    if (held && sale) {
      action = h(
        "button.button-primary.small",
        { type: "button", on: { click: () => this.payHeld(sale, order, orderDetail(sale, group, order)) } },
        t("group.payAmount", { amount: money(order.amount, order.currency) }),
      );
    } else if (group.state === "open") {
      action = h(
        "button.button-secondary.small.group-share",
        { type: "button", dataset: { testid: "group-share" }, on: { click: (click) => this._share(group, click) } },
        t("group.shareLink"),
      );
    } else if (CLOSED.has(group.state)) {
      action = h(
        "button.group-dismiss",
        { type: "button", "aria-label": t("common.close"), on: { click: () => this._dismiss(group.id) } },
        "×",
      );
    }
    return h(
      "div.group-mine",
      {
        dataset: {
          testid: "my-group",
          groupId: group.id,
          state: group.state,
          orderStatus: order?.status || "",
          joined: String(group.joined),
          paid: String(group.paid),
        },
      },
      avatars(group),
      h(
        "div.group-row-text",
        {},
        h("strong.group-headline", {}, headline),
        note ? h("span.group-note", { dataset: { testid: "group-note" } }, note) : null,
      ),
      action,
    );
  }

  /** The group a shared link opened, with its Join button (or why it can't be joined). */
  _invitePart(group, now) {
    const sale = this.room.sales.get(group.sale_id);
    const leader = group.members.find((member) => member.leader)?.name;
    const closing = group.expires_at != null && now >= group.expires_at;
    let headline = leader ? t("group.joinLeader", { name: leader }) : t("group.joinThis");
    let joinable = group.state === "open" && !closing && group.joined < group.size;
    if (group.state === "filled") headline = t("group.alreadyComplete");
    else if (CLOSED.has(group.state) || closing) headline = t("group.closed");
    else if (group.state === "pending") headline = t("group.opensWhenPaid");
    else if (group.joined >= group.size) headline = t("group.fullForNow");
    if (this._formingIn(group.sale_id)) joinable = false;
    const price = sale ? t("group.each", { price: money(sale.price, sale.currency) }) : "";
    return h(
      "div.group-invite",
      { dataset: { testid: "group-invite", groupId: group.id, state: group.state } },
      avatars(group),
      h(
        "div.group-row-text",
        {},
        h("strong.group-headline", {}, headline),
        h(
          "span.group-note",
          {},
          price + t("group.joined", { joined: group.joined, size: group.size }),
          group.state === "open" && !closing ? [" · ", clockNode(group.expires_at, "left", now)] : null,
        ),
      ),
      h(
        "button.buy-button.small.group-join",
        {
          type: "button",
          disabled: !joinable || !sale,
          dataset: { testid: "invite-join" },
          on: { click: () => sale && this._join(sale, group) },
        },
        t("group.join"),
      ),
    );
  }

  // --- opening, joining, sharing ----------------------------------------------------------------------------

  _open(sale) {
    const price = leaderPrice(sale);
    this.buy(sale, 1, {
      path: `/api/sales/${encodeURIComponent(sale.id)}/groups`,
      detail: t("group.openDetail", { size: sale.group.size, price: money(price, sale.currency) }),
      price,
      retry: (code) => RETRYABLE.has(code),
    });
  }

  _join(sale, group) {
    this.buy(sale, 1, {
      path: `/api/sales/${encodeURIComponent(sale.id)}/groups/${encodeURIComponent(group.id)}/join`,
      detail: t("group.joinDetail", { size: group.size, price: money(sale.price, sale.currency) }),
      price: sale.price,
      retry: (code) => RETRYABLE.has(code) || code === "group_full",
    });
  }

  /** Copy the group's link: the room with ?group=, and the member's ref= code when they can make share links. */
  async _share(group, click) {
    const button = click.currentTarget;
    button.disabled = true;
    try {
      const link = await this._link(group);
      button.dataset.link = link;
      const copied = await copyText(link);
      toast(this.toasts, copied ? t("group.copied") : link, {
        kind: copied ? "ok" : "info",
        ms: 5000,
      });
    } finally {
      button.disabled = false;
    }
  }

  async _link(group) {
    const link = new URL("/room.html", location.origin);
    link.searchParams.set("room", this.roomId);
    link.searchParams.set("group", group.id);
    const code = await this._shareCode();
    if (code) link.searchParams.set("ref", code);
    return link.href;
  }

  /** The person's share code with this shop (docs/referrals.md), or null when they can't make one. */
  async _shareCode() {
    if (this.shareCode !== undefined) return this.shareCode;
    const user = this.session.user;
    if (!user || user.guest || !this.room.merchantId) return null;
    try {
      const share = await api(`/api/merchants/${encodeURIComponent(this.room.merchantId)}/shares`, {
        method: "POST",
        session: this.session,
        body: { room_id: this.roomId },
      });
      this.shareCode = share.code || null;
    } catch (error) {
      // the shop pays nothing for shares (or the person can't share): the plain link still brings friends; a
      // network failure is asked again next time
      if (error.status && error.status < 500) this.shareCode = null;
      return null;
    }
    return this.shareCode;
  }

  _dismiss(groupId) {
    this.dismissed.add(groupId);
    this.render();
  }

  // --- the viewer's groups ----------------------------------------------------------------------------------

  _mineShown(now) {
    return [...this.mine.values()]
      .filter((entry) => !this.dismissed.has(entry.group.id))
      .filter((entry) => (FORMING.has(entry.group.state) ? mayStay(entry, now) : entry.order?.status !== "expired"))
      .sort((a, b) => rank(a.group) - rank(b.group) || b.group.created_at - a.group.created_at)
      .slice(0, 2);
  }

  _inviteShown() {
    const group = this.invite.group;
    if (!group || this.mine.has(group.id) || this.dismissed.has(group.id)) return null;
    return group;
  }

  /** The viewer's pending or open group in this offer, if any (one at a time: `in_group`). */
  _formingIn(saleId) {
    for (const entry of this.mine.values()) {
      if (entry.group.sale_id === saleId && FORMING.has(entry.group.state) && mayStay(entry, this.now())) {
        return entry;
      }
    }
    return null;
  }

  /** A group as the viewer knows it now: an older form of it (by `version`, or a forming one after a closed one)
   * changes nothing. */
  _put(group, extra, { quiet = false } = {}) {
    if (!group?.id) return;
    const known = this.mine.get(group.id);
    if (known && older(group, known.group)) {
      Object.assign(known, extra);
      return;
    }
    const entry = { events: 0, orderId: null, order: null, renote: null, ...known, ...extra, group: { ...group } };
    this.mine.set(group.id, entry);
    if (entry.renote && entry.order?.status === "paid") {
      entry.renote(this.paidNote({ ...entry.order, group: entry.group }));
    }
    const before = known?.group;
    if (quiet) {
      this.announced.add(`${group.id} ${group.state}`);
      return;
    }
    this._announce(before, entry);
  }

  /** Tell the member what happened to their group: someone joined, it is complete, it failed (and the refund). */
  _announce(before, entry) {
    const group = entry.group;
    const key = `${group.id} ${group.state}`;
    if (CLOSED.has(group.state)) {
      if (this.announced.has(key)) return;
      this.announced.add(key);
      if (group.state === "filled") toast(this.toasts, t("group.complete"), { kind: "ok", ms: 6000 });
      if (group.state === "failed") {
        toast(this.toasts, t("group.failed"), { kind: "error", ms: 6000 });
        this._checkRefund(entry, REFUND_CHECKS);
      }
      if (group.state === "cancelled") toast(this.toasts, t("group.cancelled"));
      if (entry.orderId && group.state !== "failed") this._loadOrder(entry);
      return;
    }
    if (before && group.state === "open" && group.joined > before.joined) {
      const newest = group.members[group.members.length - 1];
      const me = this.session.user?.name;
      if (newest && newest.name !== me) toast(this.toasts, t("group.someoneJoined", { name: newest.name }), { kind: "buy" });
    }
  }

  /** Read a failed group's order until it shows refunded (the fail script marks it; the money follows). */
  async _checkRefund(entry, attempts) {
    await this._loadOrder(entry);
    if (entry.order?.status === "refunded" || attempts <= 1 || !entry.orderId) return;
    setTimeout(() => this._checkRefund(entry, attempts - 1), 1500);
  }

  async _loadOrder(entry) {
    if (!entry.orderId) return;
    const events = entry.events;
    try {
      const order = await api(`/api/orders/${encodeURIComponent(entry.orderId)}`, { session: this.session });
      entry.order = order;
      if (order.group && events === entry.events) this._put(order.group, {}, { quiet: true });
    } catch {
      // the next event or snapshot reads it again
    }
    this.render();
  }

  /** The viewer's group orders (kept in this browser per person), read again: their groups as they are now. */
  async _restore() {
    const person = this.session.user?.id;
    if (!person) return;
    const ids = this._stored(person);
    const keep = [];
    await Promise.all(
      ids.map(async (orderId) => {
        try {
          const order = await api(`/api/orders/${encodeURIComponent(orderId)}`, { session: this.session });
          if (this.session.user?.id !== person || !order.group) return;
          const group = order.group;
          const stale = CLOSED.has(group.state) && this.now() - (group.closed_at || 0) > KEPT_CLOSED_MS;
          if (!stale) keep.push(orderId);
          const known = this.mine.get(group.id);
          if (stale && !known) return;
          this._put(group, { orderId, order }, { quiet: !known });
        } catch (error) {
          if (!error.status || error.status >= 500) keep.push(orderId); // offline: ask again next time
        }
      }),
    );
    if (this.session.user?.id === person) this._store(person, ids.filter((id) => keep.includes(id)));
    this.render();
  }

  _remember(orderId) {
    const person = this.session.user?.id;
    if (!person) return;
    const ids = this._stored(person).filter((id) => id !== orderId);
    this._store(person, [orderId, ...ids].slice(0, KEPT_ORDERS));
  }

  _stored(person) {
    const ids = orders.read(person);
    return Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : [];
  }

  /** Keep the person's group orders in this browser (storage refused: the groups of this page still show). */
  _store(person, ids) {
    orders.write(person, ids.length ? ids : undefined);
  }

  _personChanged(user) {
    const person = user?.id ?? null;
    if (person === this.person) return;
    this.person = person;
    this.mine.clear();
    this.shareCode = undefined;
    this.render();
  }

  // --- a shared group ------------------------------------------------------------------------------------------

  async _loadInvite() {
    const id = this.invite.id;
    if (!id || this.invite.asking) return;
    this.invite.asking = true;
    try {
      const group = await api(`/api/groups/${encodeURIComponent(id)}`);
      this.invite.group = group;
      if (!this.room.sales.has(group.sale_id)) {
        // an offer older than the snapshot's newest sales
        this.room.putSale(await api(`/api/sales/${encodeURIComponent(group.sale_id)}`));
      }
    } catch (error) {
      if (error.status === 404 && !this.invite.group) toast(this.toasts, t("group.linkGone"));
    } finally {
      this.invite.asking = false;
    }
    this.render();
  }

  /** What the card depends on besides events: each offer's status, each countdown that ran out. */
  _signature(now) {
    const parts = [];
    for (const sale of this.room.sales.values()) if (sale.group) parts.push(`${sale.id}:${saleStatus(sale, now)}`);
    const groups = [...this.mine.values()].map((entry) => entry.group);
    if (this.invite.group) groups.push(this.invite.group);
    for (const board of this.room.groups.values()) groups.push(...(board.open || []));
    for (const group of groups) if (group.expires_at && now >= group.expires_at) parts.push(group.id);
    for (const entry of this.mine.values()) if (!mayStay(entry, now)) parts.push(entry.orderId);
    return parts.join(" ");
  }
}

// --- pieces ----------------------------------------------------------------------------------------------

/** What the leader pays: the leader's price when the host set one, else the group price. */
function leaderPrice(sale) {
  const leader = sale.group?.leader_price;
  return typeof leader === "number" && leader < sale.price ? leader : sale.price;
}

/** Members' initials, coloured from their names, then the empty places. */
function avatars(group) {
  const members = group.members || [];
  const shown = members.slice(0, SHOWN_AVATARS);
  const empty = Math.max(0, Math.min(group.size, SHOWN_AVATARS) - shown.length);
  const more = group.size - shown.length - empty;
  const names = members.map((member) => member.name).join(", ");
  return h(
    "div.group-avatars",
    { role: "img", "aria-label": t(names ? "group.joinedNames" : "group.joined", { joined: group.joined, size: group.size, names }) },
    ...shown.map((member) => {
      const node = h(
        "span.group-avatar",
        { title: member.name, dataset: { paid: String(Boolean(member.paid)), leader: String(Boolean(member.leader)) } },
        initials(member.name),
      );
      node.style.setProperty("--hue", String(hue(member.name)));
      return node;
    }),
    ...Array.from({ length: empty }, () => h("span.group-avatar.empty")),
    more > 0 ? h("span.group-more", {}, `+${more}`) : null,
  );
}

function initials(name) {
  const words = String(name || "?").trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words;
  return letters.map((word) => Array.from(word)[0]).join("").toUpperCase() || "?";
}

/** A hue (0-359) from a name: the same name always gets the same colour. */
function hue(name) {
  let hash = 0;
  for (const char of String(name || "")) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  return hash % 360;
}

function clockNode(until, format, now) {
  const dataset = { until: String(until), format };
  return h("span.group-timer", { dataset }, countdown(dataset, now));
}

function countdown({ until, format }, now) {
  const left = clock(Number(until) - now);
  if (format === "starts") return t("group.startsIn", { clock: left });
  if (format === "ends") return t("group.endsIn", { clock: left });
  return t("group.left", { clock: left });
}

function refundNote(order) {
  const amount = money(order.refund?.amount ?? order.amount, order.refund?.currency ?? order.currency);
  if (order.status === "refunded" || order.refund) return t("group.refunded", { number: short(order.order_id), amount });
  if (order.status === "expired" || order.status === "cancelled") return t("group.notCharged");
  return t("group.refunding", { amount });
}

function orderDetail(sale, group, order) {
  return t("group.detail", { size: group.size, price: money(order.unit_price ?? sale.price, order.currency) });
}

/** True when `group` is an older form of `known`. */
function older(group, known) {
  if (typeof group.version === "number" && typeof known.version === "number") return group.version < known.version;
  return CLOSED.has(known.state) && !CLOSED.has(group.state);
}

/** Forming groups first, then the closed ones. */
function rank(group) {
  return FORMING.has(group.state) ? 0 : 1;
}

/** False once the member's own place is gone (their hold expired or they cancelled before paying). */
function mayStay(entry, now) {
  const status = entry.order?.status;
  return !status || status === "paid" || holding(entry.order, now);
}

/** The order is held and its hold still runs. */
function holding(order, now) {
  return Boolean(order && order.status === "held" && now < order.hold_expires_at);
}

function short(orderId) {
  return String(orderId || "").split(".").pop().slice(0, 6).toUpperCase();
}
